//! The bash completion for the vm-* commands, run in a real bash with a stand-in vm-list.

use std::process::Command;

fn complete(words: &str, cword: usize) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/completions/vm.bash");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {script}; vm-list() {{ printf 'work\\nbanking\\n'; }}; \
             COMP_WORDS=({words}); COMP_CWORD={cword}; _bulkhead_vm; echo \"${{COMPREPLY[*]}}\""
        ))
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn vm_names_and_options_complete() {
    assert_eq!(complete("vm-run w", 1), "work");
    assert_eq!(complete("vm-stop ''", 1), "work banking");
    assert_eq!(complete("vm-start work b", 2), "banking");
    assert_eq!(complete("vm-run --w", 1), "--wait");
    assert_eq!(complete("vm-run --r", 1), "--raw");
    assert_eq!(complete("vm-shell --r", 1), "--raw");
    assert_eq!(complete("vm-list --j", 1), "--json");
    assert_eq!(complete("vm-shell work ''", 2), "", "vm-shell takes one VM");
    // After the VM, vm-run completes commands.
    assert!(complete("vm-run work ech", 2)
        .split(' ')
        .any(|c| c == "echo"));
}
