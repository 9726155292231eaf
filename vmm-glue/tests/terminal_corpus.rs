//! The corpus of the terminal filter's fuzz target (`vmm-glue/fuzz/corpus/terminal`: recorded
//! vim, less and htop output, hostile seeds and any regression inputs) run as a unit test with
//! the target's own invariants, plus every prefix of each hostile seed, so that `cargo test`
//! checks what the fuzzer checks without a fuzzer.

use bulkhead_vmm::terminal::fuzzing::check;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/terminal");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("corpus file"))
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn every_corpus_input_keeps_the_invariants() {
    let inputs = corpus();
    let names: Vec<&str> = inputs.iter().map(|(n, _)| n.as_str()).collect();
    for seed in ["vim", "less", "htop", "osc52", "requests", "strings", "c1"] {
        assert!(names.contains(&seed), "the corpus lost its {seed} seed");
    }
    for (name, bytes) in &inputs {
        // Shown with the failure: which input broke an invariant.
        eprintln!("checking {name}");
        check(bytes);
        if bytes.len() <= 1024 {
            for end in 0..bytes.len() {
                check(&bytes[..end]);
            }
        }
    }
}
