//! The corpus of the compositor's fuzz target (`compositor/fuzz`), run as a unit test: every
//! input, fed as a VM client to the real compositor, leaves it alive and a host client still
//! gets frames. Inputs are checked one after another in one compositor, as libFuzzer runs
//! them, then each again in a fresh one.

use bulkhead_compositor::fuzzing::Harness;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/vm_client");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("corpus entry").path();
            let bytes = std::fs::read(&path).expect("corpus file");
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                bytes,
            )
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn every_corpus_input_leaves_the_session_alive() {
    let inputs = corpus();
    assert!(
        inputs.len() >= 5,
        "the corpus has {} inputs; record seeds with compositor/fuzz/record",
        inputs.len()
    );
    let mut shared = Harness::new().expect("the harness starts");
    for (name, bytes) in &inputs {
        shared
            .run(bytes)
            .unwrap_or_else(|e| panic!("{name} (after the others): {e}"));
        let windows = Harness::new()
            .expect("the harness starts")
            .run(bytes)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // The seeds recorded from apps that open a window replay to one: the recorded ids
        // and global names fit the harness's compositor.
        if ["foot", "weston-simple-shm", "gtk3-demo"].contains(&name.as_str()) {
            assert!(windows > 0, "{name} mapped no window");
        }
    }
}

/// The icon fuzz target's corpus (`compositor/fuzz/corpus/icon`): every seed decodes to an icon
/// of the launcher's size, as the target checks for whatever it is given, except the findings
/// kept as regressions (`refused-*`), which are refused with an error.
#[test]
fn every_icon_seed_decodes_to_the_launchers_size() {
    use bulkhead_compositor::icons::{decode, SIZE};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/icon");
    let (mut seen, mut refused) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        let bytes = std::fs::read(&path).expect("corpus file");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("refused-") {
            assert!(decode(&bytes).is_err(), "{name} was decoded");
            refused += 1;
            continue;
        }
        let icon = decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(icon.bgra.len(), (SIZE * SIZE * 4) as usize);
        assert!(
            icon.bgra.chunks(4).any(|p| p[3] != 0),
            "{} drew nothing",
            path.display()
        );
        seen += 1;
    }
    assert!(refused >= 1, "no regression seeds");
    assert!(seen >= 4, "only {seen} icon seeds");
}
