//! The corpora of the fuzz targets in `protocols/fuzz`, run as unit tests through the same
//! checks the targets make (`bulkhead_ipc::fuzzing`): every seed and every finding
//! (`regression-*`) holds the invariants. The seeds are the generator's output; after changing
//! it, `BULKHEAD_WRITE_SEEDS=1 cargo test -p bulkhead-ipc --test fuzz_corpus` rewrites them.

use std::path::Path;

use bulkhead_ipc::fuzzing;

fn run(target: &str, seeds: Vec<(&str, Vec<u8>)>, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    fuzzing::run_corpus(&dir, seeds, check);
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
