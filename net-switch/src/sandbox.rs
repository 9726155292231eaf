//! The switch's confinement: namespaces for the whole switch, then seccomp allow-lists in two
//! tiers.
//!
//! Namespaces (`enter_namespaces`, before any thread exists): a user namespace (mapping only the
//! caller's uid and gid), a PID namespace (the supervisor is its init; the ports are its
//! children and see nothing else), a mount namespace whose root is an empty read-only tmpfs with
//! only the switch's own directory bound in, an IPC namespace and a network namespace (no
//! interface but a down `lo`: the switch needs no network, only the sockets it already holds).
//!
//! Seccomp: the main tier (supervisor) may fork the port children, make control socket pairs,
//! ring memory and the counters file; the child tier (each port, installed on top of the main
//! tier before the port starts any thread) may not fork, create sockets or open files: it serves
//! one vhost-user connection on the listening socket it inherited. `clone` is allowed in the
//! child tier only with `CLONE_THREAD`; `clone3`, whose flags a filter cannot read, fails with
//! ENOSYS so that the C library falls back to `clone`. The lists with the reason for every entry
//! are `MAIN_SYSCALLS`, `CHILD_SYSCALLS` and `COMMON_SYSCALLS` below (and net-switch/README.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What a filter does with a system call outside its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Kill the process with SIGSYS (the default).
    Kill,
    /// Send SIGSYS to the thread (which, unhandled, also ends the process, with a core dump).
    Trap,
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
            "trap" => Ok(Mode::Trap),
            "log" => Ok(Mode::Log),
            "disabled" => Ok(Mode::Disabled),
            other => Err(format!(
                "seccomp mode {other:?}: use kill, trap, log or disabled"
            )),
        }
    }
}

/// Which allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Main,
    Child,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("building the seccomp filter: {0}")]
    Filter(String),
    #[error("installing the seccomp filter")]
    Install(#[source] seccompiler::Error),
    #[error("limiting malloc arenas")]
    Mallopt,
    #[error("{0}")]
    Namespace(String, #[source] nix::Error),
    #[error("writing {0}")]
    Map(&'static str, #[source] std::io::Error),
    #[error("the switch directory {0:?} is not an absolute path")]
    RelativeDir(PathBuf),
}

/// One system call of an allow-list, with its name and why it is on the list.
pub struct Entry {
    pub nr: i64,
    pub name: &'static str,
    pub why: &'static str,
}

macro_rules! entries {
    ($($name:ident: $why:expr),* $(,)?) => {
        &[$(Entry { nr: libc::$name, name: stringify!($name), why: $why }),*]
    };
}

/// Both tiers.
pub const COMMON_SYSCALLS: &[Entry] = entries![
    SYS_read: "eventfds, the heartbeat timer, control messages",
    SYS_write: "eventfds (doorbells, vring calls), stderr",
    SYS_recvmsg: "vhost-user messages with descriptors; control messages with ring descriptors",
    SYS_sendmsg: "vhost-user replies; control messages",
    SYS_close: "descriptors",
    SYS_fcntl: "descriptor flags (non-blocking, close-on-exec)",
    SYS_fstat: "checking the size of received shared memory before mapping it",
    SYS_newfstatat: "fstat as the C library implements it",
    SYS_statx: "fstat as newer C libraries implement it",
    SYS_mmap: "guest memory, rings, counters, allocator, thread stacks",
    SYS_munmap: "unmapping replaced rings and guest memory",
    SYS_mprotect: "thread stack guard pages",
    SYS_madvise: "allocator; vm-memory",
    SYS_mremap: "allocator",
    SYS_brk: "allocator",
    SYS_epoll_create1: "the vring worker's epoll (created after the filter)",
    SYS_epoll_ctl: "registering vring kicks, doorbell, control socket, timer",
    SYS_epoll_pwait: "the vring worker's wait",
    SYS_eventfd2: "the vring worker's exit event (created after the filter)",
    SYS_clone3: "allowed here, answered ENOSYS by a second filter (flags unreadable)",
    SYS_set_robust_list: "thread start",
    SYS_rseq: "thread start",
    SYS_sigaltstack: "thread start and exit (Rust's stack-overflow guard)",
    SYS_rt_sigprocmask: "thread start",
    SYS_rt_sigaction: "thread start (Rust's stack-overflow handler)",
    SYS_rt_sigreturn: "return from a signal handler",
    SYS_sched_getaffinity: "thread start",
    SYS_prctl: "thread names (PR_SET_NAME)",
    SYS_futex: "locks, joins",
    SYS_sched_yield: "locks",
    SYS_gettid: "thread bookkeeping",
    SYS_getpid: "thread bookkeeping",
    SYS_tgkill: "abort after a panic",
    SYS_getrandom: "hash maps",
    SYS_clock_gettime: "time when the vDSO is unavailable",
    SYS_ppoll: "the relay waiting on the VMM and the backend",
    SYS_restart_syscall: "interrupted calls",
    SYS_exit: "thread exit",
    SYS_exit_group: "process exit",
];

/// The child tier adds these to the common list.
pub const CHILD_SYSCALLS: &[Entry] = entries![
    SYS_accept4: "accepting the VMM's vhost-user connection on the inherited listener",
    SYS_shutdown: "ending the vhost-user connection",
];

/// The main tier adds these to the common list (and `clone` without restriction).
pub const MAIN_SYSCALLS: &[Entry] = entries![
    SYS_accept4: "(inherited by children before their own filter)",
    SYS_shutdown: "(inherited by children before their own filter)",
    SYS_wait4: "reaping port children",
    SYS_kill: "killing a hung child",
    SYS_socketpair: "a control channel per child (checked: AF_UNIX)",
    SYS_socket: "a child's backend connection (checked: AF_UNIX)",
    SYS_bind: "a child's backend connection, bound in the switch directory",
    SYS_listen: "a child's backend connection",
    SYS_connect: "a child's backend connection",
    SYS_memfd_create: "ring memory and counter pages",
    SYS_ftruncate: "sizing ring memory",
    SYS_openat: "writing counters.json in the switch directory",
    SYS_renameat: "replacing counters.json atomically",
    SYS_renameat2: "replacing counters.json atomically",
    SYS_unlinkat: "consuming test trigger files",
    SYS_clock_nanosleep: "the supervision tick",
    SYS_nanosleep: "the supervision tick",
    SYS_close_range: "a new child closing the descriptors of other ports",
    SYS_dup: "a new child's descriptors",
    SYS_timerfd_create: "a new child's heartbeat timer (before the child tier)",
    SYS_timerfd_settime: "a new child's heartbeat timer (before the child tier)",
    SYS_seccomp: "a new child installing the child tier",
    SYS_getppid: "a new child checking its parent",
    SYS_lseek: "writing counters.json",
];

/// Older system calls that only x86_64 has (aarch64 has only the *at and p* forms), both tiers.
#[cfg(target_arch = "x86_64")]
pub const X86_64_COMMON: &[Entry] = entries![
    SYS_epoll_wait: "the vring worker's wait (older libc)",
    SYS_poll: "the relay waiting on the VMM and the backend",
];

/// Older system calls that only x86_64 has, main tier.
#[cfg(target_arch = "x86_64")]
pub const X86_64_MAIN: &[Entry] = entries![
    SYS_rename: "replacing counters.json atomically (std uses rename)",
    SYS_unlink: "consuming test trigger files (std uses unlink)",
];

fn arch() -> TargetArch {
    if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    }
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, SandboxError> {
    let filter = SeccompFilter::new(rules, mismatch, matched, arch())
        .map_err(|e| SandboxError::Filter(e.to_string()))?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Filter(e.to_string()))
}

/// The allow-list program of a tier.
pub fn program(tier: Tier, action: SeccompAction) -> Result<BpfProgram, SandboxError> {
    let extra = match tier {
        Tier::Main => MAIN_SYSCALLS,
        Tier::Child => CHILD_SYSCALLS,
    };
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = COMMON_SYSCALLS
        .iter()
        .chain(extra)
        .map(|e| (e.nr, Vec::new()))
        .collect();
    #[cfg(target_arch = "x86_64")]
    for e in X86_64_COMMON {
        rules.insert(e.nr, Vec::new());
    }
    #[cfg(target_arch = "x86_64")]
    if tier == Tier::Main {
        for e in X86_64_MAIN {
            rules.insert(e.nr, Vec::new());
        }
    }
    let thread_only = SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64),
        libc::CLONE_THREAD as u64,
    )
    .and_then(|c| SeccompRule::new(vec![c]))
    .map_err(|e| SandboxError::Filter(e.to_string()))?;
    match tier {
        Tier::Child => {
            rules.insert(libc::SYS_clone, vec![thread_only]);
        }
        Tier::Main => {
            rules.insert(libc::SYS_clone, Vec::new());
            let unix = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::AF_UNIX as u64,
            )
            .and_then(|c| SeccompRule::new(vec![c]))
            .map_err(|e| SandboxError::Filter(e.to_string()))?;
            rules.insert(libc::SYS_socketpair, vec![unix.clone()]);
            rules.insert(libc::SYS_socket, vec![unix]);
        }
    }
    compile(rules, action, SeccompAction::Allow)
}

/// Installs a tier's filters on the calling thread (and every thread it creates later).
pub fn install(tier: Tier, mode: Mode) -> Result<(), SandboxError> {
    let action = match mode {
        Mode::Disabled => return Ok(()),
        Mode::Kill => SeccompAction::KillProcess,
        Mode::Trap => SeccompAction::Trap,
        Mode::Log => SeccompAction::Log,
    };
    // One malloc arena: glibc reads /proc/sys/vm/overcommit_memory when it trims a thread's
    // own arena, and open is not on the child's list.
    // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
    if unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) } != 1 {
        return Err(SandboxError::Mallopt);
    }
    let allow = program(tier, action)?;
    // clone3 → ENOSYS, so thread creation falls back to clone, whose flags the list checks.
    let mut only_clone3 = BTreeMap::new();
    only_clone3.insert(libc::SYS_clone3, Vec::new());
    let no_clone3 = compile(
        only_clone3,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
    )?;
    // This one first: once the allow-list is in, the child tier may not call seccomp(2).
    seccompiler::apply_filter(&no_clone3).map_err(SandboxError::Install)?;
    seccompiler::apply_filter(&allow).map_err(SandboxError::Install)
}

/// Enters new user, mount, IPC and network namespaces and a new PID namespace for the
/// children of the caller. Must run before any thread exists. The caller then forks: the
/// child is the namespace's init and calls `pivot_to_tmpfs`.
pub fn enter_namespaces() -> Result<(), SandboxError> {
    use nix::sched::{unshare, CloneFlags};
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    unshare(
        CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWPID,
    )
    .map_err(|e| SandboxError::Namespace("creating namespaces".into(), e))?;
    std::fs::write("/proc/self/setgroups", "deny")
        .map_err(|e| SandboxError::Map("/proc/self/setgroups", e))?;
    std::fs::write("/proc/self/uid_map", format!("{uid} {uid} 1"))
        .map_err(|e| SandboxError::Map("/proc/self/uid_map", e))?;
    std::fs::write("/proc/self/gid_map", format!("{gid} {gid} 1"))
        .map_err(|e| SandboxError::Map("/proc/self/gid_map", e))?;
    Ok(())
}

/// Makes the root an empty read-only tmpfs holding only `keep` (bound read-write at the same
/// paths). Runs inside the mount namespace from `enter_namespaces`.
pub fn pivot_to_tmpfs(keep: &[&Path]) -> Result<(), SandboxError> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let ns = |what: &str| {
        let what = what.to_string();
        move |e| SandboxError::Namespace(what, e)
    };
    for k in keep {
        if !k.is_absolute() {
            return Err(SandboxError::RelativeDir(k.to_path_buf()));
        }
    }
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(ns("making mounts private"))?;
    // The kept directories may lie under the mount point of the new root: hold them open so
    // they can still be bound once the tmpfs hides them.
    let held = keep
        .iter()
        .map(|k| {
            nix::fcntl::open(
                *k,
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_DIRECTORY
                    | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map(|fd| {
                // SAFETY: `open` just returned this descriptor; nothing else owns it.
                unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
            })
            .map_err(ns("opening the switch directory"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let base = Path::new("/tmp");
    mount(
        Some("tmpfs"),
        base,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=64k,mode=0755"),
    )
    .map_err(ns("mounting the tmpfs root"))?;
    for (k, fd) in keep.iter().zip(&held) {
        let inside = base.join(k.strip_prefix("/").unwrap_or(k));
        let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
        std::fs::create_dir_all(&inside).map_err(|e| {
            SandboxError::Namespace(
                format!("creating {inside:?}: {e}"),
                nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            )
        })?;
        mount(
            Some(source.as_str()),
            &inside,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(ns("binding the switch directory"))?;
    }
    let old = base.join(".old");
    nix::unistd::mkdir(&old, nix::sys::stat::Mode::from_bits_truncate(0o700))
        .map_err(ns("creating the old-root mount point"))?;
    nix::unistd::pivot_root(base, &old).map_err(ns("pivoting to the tmpfs root"))?;
    nix::unistd::chdir("/").map_err(ns("entering the new root"))?;
    umount2("/.old", MntFlags::MNT_DETACH).map_err(ns("detaching the old root"))?;
    let _ = std::fs::remove_dir("/.old");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(ns("making the root read-only"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_compile_and_differ() {
        let main = program(Tier::Main, SeccompAction::KillProcess).unwrap();
        let child = program(Tier::Child, SeccompAction::KillProcess).unwrap();
        assert!(!main.is_empty() && !child.is_empty());
        assert_ne!(main, child);
    }

    #[test]
    fn child_tier_forbids_fork_socket_open() {
        let child: Vec<i64> = COMMON_SYSCALLS
            .iter()
            .chain(CHILD_SYSCALLS)
            .map(|e| e.nr)
            .collect();
        for nr in [
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_openat,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_execve,
            libc::SYS_memfd_create,
            libc::SYS_connect,
            libc::SYS_bind,
        ] {
            assert!(!child.contains(&nr), "syscall {nr} on the child list");
        }
    }

    #[test]
    fn every_entry_has_a_reason_and_no_duplicates() {
        for list in [COMMON_SYSCALLS, CHILD_SYSCALLS, MAIN_SYSCALLS] {
            for e in list {
                assert!(!e.why.is_empty(), "{}", e.name);
            }
        }
        let mut all: Vec<i64> = COMMON_SYSCALLS
            .iter()
            .chain(MAIN_SYSCALLS)
            .map(|e| e.nr)
            .collect();
        all.sort();
        let n = all.len();
        all.dedup();
        assert_eq!(all.len(), n, "a syscall is listed twice");
    }

    #[test]
    fn readme_lists_every_syscall() {
        let readme = include_str!("../README.md");
        #[cfg(target_arch = "x86_64")]
        let extra = X86_64_COMMON.iter().chain(X86_64_MAIN);
        #[cfg(not(target_arch = "x86_64"))]
        let extra = [].iter();
        for e in COMMON_SYSCALLS
            .iter()
            .chain(CHILD_SYSCALLS)
            .chain(MAIN_SYSCALLS)
            .chain(extra)
        {
            let name = e.name.trim_start_matches("SYS_");
            assert!(
                readme.contains(&format!("`{name}`")),
                "README.md does not list `{name}`"
            );
        }
    }
}
