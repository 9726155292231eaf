//! The corpora of the fuzz targets in `protocols/fuzz`, run as unit tests through the same
//! checks the targets make (`bulkhead_ipc::fuzzing`): every seed and every finding
//! (`regression-*`) holds the invariants. The seeds are the generator's output; after changing
//! it, `BULKHEAD_WRITE_SEEDS=1 cargo test -p bulkhead-ipc --test fuzz_corpus` rewrites them.

use std::path::{Path, PathBuf};

use bulkhead_ipc::fuzzing;

fn dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = dir(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("corpus entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            let name = path.file_name().expect("a file name");
            (name.to_string_lossy().into_owned(), bytes)
        })
        .collect();
    inputs.sort();
    inputs
}

/// Every corpus file passes `check`; the seeds are exactly what the generator makes now.
fn run(target: &str, seeds: Vec<(&str, Vec<u8>)>, check: fn(&[u8])) {
    if std::env::var_os("BULKHEAD_WRITE_SEEDS").is_some() {
        for (name, _) in corpus(target) {
            if name.starts_with("seed-") {
                std::fs::remove_file(dir(target).join(name)).expect("remove an old seed");
            }
        }
        for (name, bytes) in &seeds {
            std::fs::write(dir(target).join(format!("seed-{name}")), bytes).expect("write a seed");
        }
    }
    let inputs = corpus(target);
    let mut committed: Vec<_> = inputs
        .iter()
        .filter(|(n, _)| n.starts_with("seed-"))
        .map(|(n, b)| (n.clone(), b.clone()))
        .collect();
    committed.sort();
    let mut generated: Vec<_> = seeds
        .into_iter()
        .map(|(n, b)| (format!("seed-{n}"), b))
        .collect();
    generated.sort();
    assert!(
        committed == generated,
        "the seeds of {target} differ from the generator's; rewrite them with BULKHEAD_WRITE_SEEDS=1"
    );
    for (name, bytes) in &inputs {
        assert!(
            name.starts_with("seed-") || name.starts_with("regression-"),
            "{target}/{name}: corpus files are seeds or regressions"
        );
        if let Err(panic) = std::panic::catch_unwind(|| check(bytes)) {
            std::panic::resume_unwind(Box::new(format!("{target}/{name}: {panic:?}")));
        }
    }
}

#[test]
fn wlstream_corpus_holds_the_invariants() {
    run(
        "wlstream",
        fuzzing::wlstream_seeds(),
        fuzzing::check_wlstream,
    );
}

#[test]
fn agent_corpus_holds_the_invariants() {
    run("agent", fuzzing::agent_seeds(), fuzzing::check_agent);
}
