//! Helper process for the embedded store's `kill -9` test: opens the store
//! in the directory given as the only argument and creates keys from eight
//! concurrent tasks until it is killed, printing `<key> <revision>` for each
//! write only after the store has acknowledged it.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use nmstate_apiserver::storage::{Store, embedded::EmbeddedStore, object_key};
use tokio::sync::mpsc;

const WRITERS: usize = 8;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .expect("usage: embedded_writer <data-dir>")
        .into();
    let store = Arc::new(
        EmbeddedStore::open(Path::new(&dir))
            .await
            .expect("open the embedded store"),
    );
    let (acks, mut printed) = mpsc::unbounded_channel::<String>();
    for writer in 0..WRITERS {
        let store = store.clone();
        let acks = acks.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let key = object_key("nodenetworkstates", &format!("w{writer}-{i:06}"));
                let kv = store
                    .create(&key, format!("{{\"i\":{i}}}").into_bytes())
                    .await
                    .expect("create");
                if acks
                    .send(format!("{} {}", kv.key, kv.mod_revision))
                    .is_err()
                {
                    return;
                }
            }
        });
    }
    drop(acks);
    // One printer, so that lines never interleave; each is flushed at once
    // because the parent may kill this process at any moment.
    while let Some(line) = printed.recv().await {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").expect("write to stdout");
        out.flush().expect("flush stdout");
    }
}
