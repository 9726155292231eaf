//! The corpus of the fuzz target in `guest-proxy/fuzz`, run as a unit test through the same
//! checks the targets make (`bulkhead_guest::fuzzing`): every seed and every finding
//! (`regression-*`) holds the invariants. The seeds are the generator's output; after changing
//! it, `BULKHEAD_WRITE_SEEDS=1 cargo test -p bulkhead-guest --test fuzz_corpus` rewrites them.

use std::path::Path;

use bulkhead_guest::fuzzing;

fn run(target: &str, seeds: Vec<(&str, Vec<u8>)>, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    bulkhead_ipc::fuzzing::run_corpus(&dir, seeds, check);
}

#[test]
fn wire_corpus_holds_the_invariants() {
    run("wire", fuzzing::wire_seeds(), fuzzing::check_wire);
}

/// The seeds get as far as they are meant to: the sessions to their end (a typo in the
/// generator would leave the fuzzer starting from a dropped app), the hostile one not.
#[test]
fn seed_sessions_run_to_their_end() {
    for (name, bytes) in fuzzing::wire_seeds() {
        let refused = fuzzing::refused_at(&bytes);
        if name == "bind-not-offered" {
            assert_eq!(refused, Some(2), "{name}");
        } else {
            assert_eq!(refused, None, "{name}");
        }
    }
}
