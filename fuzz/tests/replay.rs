//! Every fuzz target's check over its seed corpus (made by `seed.py` from
//! the repository's test data) and over `regressions/<target>/`, the inputs
//! a fuzzer once failed on: on stable Rust, without libFuzzer, so that
//! `hack/test.sh` keeps every crash found fixed.

use std::{fs, path::Path, process::Command};

/// A target's name and its check.
type Target = (&'static str, fn(&[u8]));

const TARGETS: [Target; 5] = [
    ("decode", nmstate_fuzz::decode::check),
    ("patch", nmstate_fuzz::patch::check),
    ("record_codec", nmstate_fuzz::record_codec::check),
    ("render", nmstate_fuzz::render::check),
    ("selectors", nmstate_fuzz::selectors::check),
];

#[test]
fn seeds_and_regressions_pass_every_check() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeded = Command::new("python3")
        .arg(fuzz.join("seed.py"))
        .status()
        .expect("running seed.py");
    assert!(seeded.success(), "seed.py failed");
    for (target, check) in TARGETS {
        let mut inputs = 0;
        for directory in ["corpus", "regressions"] {
            let Ok(entries) = fs::read_dir(fuzz.join(directory).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.expect("a directory entry").path();
                let data = fs::read(&path).expect("reading an input");
                let outcome = std::panic::catch_unwind(|| check(&data));
                assert!(outcome.is_ok(), "{target}: {} fails", path.display());
                inputs += 1;
            }
        }
        assert!(inputs > 0, "{target}: no seed input");
        eprintln!("{target}: {inputs} inputs pass");
    }
}
