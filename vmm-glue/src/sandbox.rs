//! Seccomp allow-lists for the helpers Bulkhead writes itself and that parse what a VM sends.
//!
//! The Wayland bridge, once listening, needs to: accept guest streams and connect to the VM's
//! Wayland socket (Unix sockets only), move bytes and file descriptors (read, write, recvmsg,
//! sendmsg), make shared memory and pipes (memfd_create, ftruncate, mmap, pipe2), inspect the
//! descriptors the compositor sends (fstat, fcntl, pread), run a thread per app (clone3, futex,
//! mmap and friends for stacks and the allocator) and exit. Nothing else: no open, no exec, no
//! other socket families. The filter is installed before the first stream is accepted and
//! applies to every thread created after.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What a filter does with a system call outside its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kill the process (the default).
    Kill,
    /// Log it and let it through (for finding a missing entry).
    Log,
    /// No filter (debugging only).
    Disabled,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "kill" => Ok(Mode::Kill),
            "log" => Ok(Mode::Log),
            "disabled" => Ok(Mode::Disabled),
            other => Err(format!("seccomp mode {other:?}: use kill, log or disabled")),
        }
    }
}

/// The bridge's system calls, each with why it is needed.
const BRIDGE_SYSCALLS: &[(i64, &str)] = &[
    (libc::SYS_accept4, "accept guest streams"),
    (libc::SYS_connect, "connect to the VM's Wayland socket"),
    (libc::SYS_read, "stream records"),
    (libc::SYS_write, "stream records, pipes, stderr"),
    (
        libc::SYS_recvfrom,
        "stream records (std reads sockets with recv), shm data straight into a pool",
    ),
    (libc::SYS_sendto, "stream records (send on sockets)"),
    (
        libc::SYS_recvmsg,
        "Wayland bytes with descriptors from the compositor",
    ),
    (
        libc::SYS_sendmsg,
        "Wayland bytes with descriptors to the compositor",
    ),
    (libc::SYS_shutdown, "ending a stream"),
    (libc::SYS_close, "descriptors"),
    (libc::SYS_memfd_create, "shared memory for wl_shm pools"),
    (libc::SYS_ftruncate, "sizing and growing pools"),
    (libc::SYS_pread64, "reading a keymap the compositor shares"),
    (libc::SYS_pipe2, "clipboard and drag-and-drop transfers"),
    (libc::SYS_fstat, "telling pipes from files"),
    (libc::SYS_newfstatat, "telling pipes from files"),
    (libc::SYS_statx, "telling pipes from files"),
    (
        libc::SYS_fcntl,
        "a pipe's access mode; dup for passing descriptors",
    ),
    (
        libc::SYS_mmap,
        "mapping pools to fill with the guest's rectangles; allocator and thread stacks",
    ),
    (libc::SYS_munmap, "pools, allocator and thread stacks"),
    (libc::SYS_mprotect, "thread stack guard pages"),
    (libc::SYS_madvise, "allocator"),
    (libc::SYS_mremap, "allocator"),
    (libc::SYS_brk, "allocator"),
    (libc::SYS_clone3, "a thread per app stream"),
    (libc::SYS_clone, "a thread per app stream (older libc)"),
    (libc::SYS_set_robust_list, "thread start"),
    (libc::SYS_rseq, "thread start"),
    (
        libc::SYS_sigaltstack,
        "thread start and exit (Rust's stack-overflow guard)",
    ),
    (libc::SYS_rt_sigprocmask, "thread start"),
    (
        libc::SYS_rt_sigaction,
        "thread start (Rust's stack-overflow handler)",
    ),
    (libc::SYS_sched_getaffinity, "thread start"),
    (
        libc::SYS_ppoll,
        "waiting on a stream's compositor socket and pipes at once",
    ),
    (libc::SYS_futex, "locks and joins"),
    (libc::SYS_sched_yield, "locks"),
    (libc::SYS_gettid, "thread bookkeeping"),
    (libc::SYS_getpid, "thread bookkeeping"),
    (libc::SYS_getrandom, "hash maps"),
    (libc::SYS_restart_syscall, "interrupted calls"),
    (libc::SYS_exit, "thread exit"),
    (libc::SYS_exit_group, "process exit"),
];

/// Installs the bridge's filter on this thread and the threads it creates later.
pub fn confine_bridge(mode: Mode) -> Result<(), String> {
    let action = match mode {
        Mode::Disabled => return Ok(()),
        Mode::Kill => SeccompAction::KillProcess,
        Mode::Log => SeccompAction::Log,
    };
    // One malloc arena: glibc reads /proc/sys/vm/overcommit_memory when it trims a thread's
    // own arena, and open is not on the list.
    // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) } != 1 {
        return Err("cannot limit malloc arenas before the seccomp filter".into());
    }
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BRIDGE_SYSCALLS
        .iter()
        .map(|(nr, _)| (*nr, Vec::new()))
        .collect();
    // socket(): Unix sockets only (connect needs one).
    let unix_only = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::Eq,
        libc::AF_UNIX as u64,
    )
    .and_then(|c| SeccompRule::new(vec![c]))
    .map_err(|e| e.to_string())?;
    rules.insert(libc::SYS_socket, vec![unix_only]);
    let arch = if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    };
    let filter = SeccompFilter::new(rules, action, SeccompAction::Allow, arch)
        .map_err(|e| format!("seccomp filter: {e}"))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp filter: {e}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("cannot install seccomp: {e}"))
}
