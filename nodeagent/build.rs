//! Link settings of the `nmstate-agent` and `nmstate-helper` binaries.
//!
//! Optimised builds for glibc pack the binary's relative relocations
//! (`-z pack-relative-relocs`: `DT_RELR`, which glibc 2.36 and later
//! apply). A position-independent binary otherwise carries one 24-byte
//! `RELA` entry per pointer in its read-only data (vtables, string tables),
//! about 0.5 MiB in the agent, which the loader reads at every start and
//! which then stays resident; packed, they take a few KiB. The binary then
//! needs `GLIBC_ABI_DT_RELR`: an older glibc refuses to load it, with that
//! name in the error. Debug and test builds are left as they are.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let var = |name| env::var(name).unwrap_or_default();
    if var("PROFILE") == "release"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
    {
        // The helper too: it starts for every read and apply.
        for bin in ["nmstate-agent", "nmstate-helper"] {
            println!("cargo:rustc-link-arg-bin={bin}=-Wl,-z,pack-relative-relocs");
        }
    }
}
