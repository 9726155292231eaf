//! Starts one process inside its [`View`]: new user, mount, PID, IPC and UTS namespaces (and
//! network, unless the view keeps the host's), an empty tmpfs as its root after pivot_root
//! holding only the view's binds, no capabilities, no new privileges, a core-dump and open-file
//! limit. Works as root and unprivileged alike: the user namespace maps the caller's own ids
//! (all ids when root, so file ownership stays what it is on the host).
//!
//! Everything that allocates or can fail in a way worth a message is prepared in the parent;
//! the child only makes system calls and reports the first failure through a pipe before
//! `execve`, so a spawn either runs the program or returns why it could not.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::unistd::Pid;

use crate::confine::View;

/// Where the new root is assembled before pivot_root (a tmpfs mounted over it in the child's
/// own mount namespace; the host's directory is untouched).
const BASE: &str = "/tmp";

/// The open-file limit of a confined process.
const NOFILE: u64 = 4096;

/// Parts of /proc a confined process may read but never write.
const PROC_READ_ONLY: &[&str] = &["/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs"];

/// Parts of /proc a confined process must not even read or trigger.
const PROC_HIDDEN: &[&str] = &[
    "/proc/sysrq-trigger",
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/kallsyms",
];

/// The most host paths one view may bind.
const MAX_BINDS: usize = 256;

/// The stack of the cloned child until it calls execve.
const CHILD_STACK: usize = 1 << 20;

/// One process to start confined.
pub struct Launch<'a> {
    /// The program's resolved host path.
    pub program: &'a Path,
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    pub view: &'a View,
    /// stdin, stdout, stderr.
    pub stdio: [OwnedFd; 3],
    /// Handed in as fds 3, 4, ...
    pub fds: Vec<OwnedFd>,
    /// Whether the process keeps its capabilities inside its user namespace (virtiofsd as root
    /// needs them to act for the guest's users and to build its own sandbox).
    pub keep_capabilities: bool,
}

/// A bind, ready for the child (which opens the source itself: a bind mount must come from
/// its own mount namespace).
struct Bind {
    source: CString,
    target: CString,
    dir: bool,
    writable: bool,
    device: bool,
}

/// Everything the child needs, allocated before clone.
struct Prepared {
    program: CString,
    argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env: Vec<CString>,
    env_ptrs: Vec<*const libc::c_char>,
    base: CString,
    dirs: Vec<CString>,
    binds: Vec<Bind>,
    links: Vec<(CString, CString)>,
    proc_dir: CString,
    /// Parts of the new /proc made read-only (false) or hidden behind /dev/null (true): a
    /// process that is uid 0 on the host (root's mapping) must not write sysctls such as
    /// kernel.core_pattern, which check the uid and no capability, or the sysrq trigger.
    proc_guarded: Vec<(CString, bool)>,
    cwd: CString,
    /// The fds the program gets, in order from 0.
    fds: Vec<OwnedFd>,
    keep_capabilities: bool,
}

fn cstr(b: &[u8]) -> Result<CString, String> {
    CString::new(b).map_err(|_| format!("{:?} contains a NUL byte", String::from_utf8_lossy(b)))
}

fn under_base(path: &Path) -> Result<CString, String> {
    let mut v = BASE.as_bytes().to_vec();
    v.extend_from_slice(path.as_os_str().as_bytes());
    cstr(&v)
}

/// The environment every confined process starts with, then the spec's own.
fn environment(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = vec![(
        "PATH".to_string(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
    )];
    for key in ["RUST_LOG", "RUST_BACKTRACE", "LANG"] {
        if let Some(v) = std::env::var_os(key) {
            env.push((key.into(), v.to_string_lossy().into_owned()));
        }
    }
    env.extend(extra.iter().cloned());
    env
}

fn prepare(l: Launch) -> Result<Prepared, String> {
    let argv: Vec<CString> = l
        .argv
        .iter()
        .map(|a| cstr(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = environment(l.env)
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}").as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut want_parents = |p: &Path| {
        for a in p.ancestors().skip(1) {
            if a != Path::new("/") && !dirs.iter().any(|d| d == a) {
                dirs.push(a.to_path_buf());
            }
        }
    };
    if l.view.binds.len() > MAX_BINDS {
        return Err(format!(
            "{} host paths for one process; at most {MAX_BINDS}",
            l.view.binds.len()
        ));
    }
    let mut binds = Vec::new();
    for b in &l.view.binds {
        let meta = std::fs::metadata(&b.path).map_err(|e| {
            format!(
                "{} cannot be given to the confined process: {e}",
                b.path.display()
            )
        })?;
        want_parents(&b.path);
        use std::os::unix::fs::FileTypeExt;
        let ft = meta.file_type();
        binds.push(Bind {
            source: cstr(b.path.as_os_str().as_bytes())?,
            target: under_base(&b.path)?,
            dir: ft.is_dir(),
            writable: b.writable,
            // Device nodes, and directories of them (/dev/vfio), keep working.
            device: ft.is_char_device() || ft.is_block_device() || b.path.starts_with("/dev"),
        });
    }
    let mut links = Vec::new();
    for (at, to) in &l.view.links {
        want_parents(at);
        links.push((cstr(to.as_os_str().as_bytes())?, under_base(at)?));
    }
    want_parents(&l.cwd.join("x"));
    // Parents first: shorter paths sort before the paths below them.
    dirs.sort_by_key(|d| d.components().count());
    let dirs = dirs
        .iter()
        .map(|d| under_base(d))
        .collect::<Result<Vec<_>, _>>()?;
    let mut fds: Vec<OwnedFd> = l.stdio.into_iter().collect();
    fds.extend(l.fds);
    let mut p = Prepared {
        program: cstr(l.program.as_os_str().as_bytes())?,
        argv,
        argv_ptrs: Vec::new(),
        env,
        env_ptrs: Vec::new(),
        base: cstr(BASE.as_bytes())?,
        dirs,
        binds,
        links,
        proc_dir: under_base(Path::new("/proc"))?,
        proc_guarded: PROC_READ_ONLY
            .iter()
            .map(|p| Ok((under_base(Path::new(p))?, false)))
            .chain(
                PROC_HIDDEN
                    .iter()
                    .map(|p| Ok((under_base(Path::new(p))?, true))),
            )
            .collect::<Result<_, String>>()?,
        cwd: cstr(l.cwd.as_os_str().as_bytes())?,
        fds,
        keep_capabilities: l.keep_capabilities,
    };
    p.argv_ptrs = p.argv.iter().map(|a| a.as_ptr()).collect();
    p.argv_ptrs.push(std::ptr::null());
    p.env_ptrs = p.env.iter().map(|a| a.as_ptr()).collect();
    p.env_ptrs.push(std::ptr::null());
    Ok(p)
}

/// Starts `l` confined; returns its pid (in the caller's PID namespace) once it has called
/// execve, or why it could not start.
pub fn spawn(l: Launch) -> Result<Pid, String> {
    let host_network = l.view.host_network;
    let p = prepare(l)?;
    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS;
    if !host_network {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let mut stack = vec![0u8; CHILD_STACK];
    let (sync_fd, err_fd) = (sync_r.as_raw_fd(), err_w.as_raw_fd());
    let (sync_w_fd, err_r_fd) = (sync_w.as_raw_fd(), err_r.as_raw_fd());
    let child = Box::new(|| -> isize {
        // SAFETY: this runs in the cloned child (no CLONE_VM: its own copy of memory), which
        // only makes system calls on what `prepare` built and then execs or exits. Its copies
        // of the parent's pipe ends go first, so a parent that dies is seen as EOF.
        unsafe {
            libc::close(sync_w_fd);
            libc::close(err_r_fd);
            child_main(&p, sync_fd, err_fd)
        }
    });
    // SAFETY: the monitor is single-threaded, so the child's copy of memory is consistent (no
    // lock held by another thread); the child never returns into Rust code of the parent.
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(libc::SIGCHLD)) }.map_err(
        |e| {
            format!(
                "cannot create the namespaces of a confined process: {e}{}",
                if e == nix::errno::Errno::EPERM || e == nix::errno::Errno::ENOSPC {
                    "; unprivileged user namespaces must be enabled \
                     (sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0)"
                } else {
                    ""
                }
            )
        },
    )?;
    drop(sync_r);
    drop(err_w);
    if let Err(e) = write_id_maps(pid) {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(e);
    }
    // Let the child go on, then read its report: EOF means execve succeeded.
    let mut w = File::from(sync_w);
    let _ = std::io::Write::write_all(&mut w, b"g");
    drop(w);
    let mut msg = Vec::new();
    let _ = File::from(err_r).take(4096).read_to_end(&mut msg);
    if msg.is_empty() {
        return Ok(pid);
    }
    let _ = nix::sys::wait::waitpid(pid, None);
    Err(String::from_utf8_lossy(&msg).into_owned())
}

/// The child's ids: itself when unprivileged; every id when root, so the host's ownership
/// holds inside. Written by the parent, which has the right to write them.
fn write_id_maps(pid: Pid) -> Result<(), String> {
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let (umap, gmap) = if uid == 0 {
        ("0 0 4294967295".to_string(), "0 0 4294967295".to_string())
    } else {
        std::fs::write(format!("/proc/{pid}/setgroups"), "deny")
            .map_err(|e| format!("setgroups of a confined process: {e}"))?;
        (format!("{uid} {uid} 1"), format!("{gid} {gid} 1"))
    };
    std::fs::write(format!("/proc/{pid}/uid_map"), umap)
        .map_err(|e| format!("uid_map of a confined process: {e}"))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), gmap)
        .map_err(|e| format!("gid_map of a confined process: {e}"))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Reports `what` and errno to the parent and exits.
///
/// # Safety
/// Only in the cloned child.
unsafe fn die(err_fd: RawFd, what: &[u8]) -> isize {
    // SAFETY: only called in the cloned child (see the function's contract).
    unsafe {
        let errno = std::io::Error::last_os_error();
        let msg = format!("{}: {errno}", String::from_utf8_lossy(what));
        libc::write(err_fd, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}

/// Checks a libc return value; on failure reports and exits.
macro_rules! check {
    ($err:expr, $what:expr, $call:expr) => {
        if $call < 0 {
            return die($err, $what);
        }
    };
}

/// Like `check!` for functions returning Option<isize>.
macro_rules! check_some {
    ($err:expr, $what:expr, $call:expr) => {
        if $call < 0 {
            return Some(die($err, $what));
        }
    };
}

/// The child: wait for the id maps, build the root, drop privileges, exec.
///
/// # Safety
/// Only in the cloned child, with `p` from `prepare`.
unsafe fn child_main(p: &Prepared, sync_fd: RawFd, err: RawFd) -> isize {
    // SAFETY: only called in the cloned child (see the function's contract).
    unsafe {
        check!(
            err,
            b"prctl(PR_SET_PDEATHSIG)",
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL)
        );
        let mut go = [0u8; 1];
        if libc::read(sync_fd, go.as_mut_ptr().cast(), 1) != 1 {
            return die(err, b"the monitor went away before the id maps");
        }
        if let Some(r) = build_root(p, err) {
            return r;
        }
        if let Some(r) = drop_privileges(p, err) {
            return r;
        }
        if let Some(r) = place_fds(p, err) {
            return r;
        }
        // What the monitor ignores (SIGHUP) or Rust's runtime did (SIGPIPE) is not inherited.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGHUP, libc::SIG_DFL);
        libc::execve(
            p.program.as_ptr(),
            p.argv_ptrs.as_ptr(),
            p.env_ptrs.as_ptr(),
        );
        die(err, p.program.as_bytes())
    }
}

/// Mounts the view on a tmpfs and pivots into it. Returns Some(exit) on failure.
///
/// # Safety
/// Only in the cloned child.
unsafe fn build_root(p: &Prepared, err: RawFd) -> Option<isize> {
    // SAFETY: only called in the cloned child (see the function's contract).
    unsafe {
        let null = std::ptr::null::<libc::c_char>();
        let none = std::ptr::null::<libc::c_void>();
        let root = c"/".as_ptr();
        if libc::mount(null, root, null, libc::MS_REC | libc::MS_PRIVATE, none) < 0 {
            return Some(die(err, b"making mounts private"));
        }
        // The sources, opened before the tmpfs hides what lies under the base.
        let mut sources = [0 as RawFd; MAX_BINDS];
        for (b, fd) in p.binds.iter().zip(sources.iter_mut()) {
            *fd = libc::open(b.source.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
            if *fd < 0 {
                return Some(die(err, b.source.as_bytes()));
            }
        }
        let tmpfs = c"tmpfs".as_ptr();
        let opts = c"mode=0755,size=1m,nr_inodes=4096";
        if libc::mount(
            tmpfs,
            p.base.as_ptr(),
            tmpfs,
            libc::MS_NOSUID | libc::MS_NODEV,
            opts.as_ptr().cast(),
        ) < 0
        {
            return Some(die(err, b"mounting the new root"));
        }
        for d in &p.dirs {
            if libc::mkdir(d.as_ptr(), 0o755) < 0
                && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
            {
                return Some(die(err, d.as_bytes()));
            }
        }
        for (b, fd) in p.binds.iter().zip(sources) {
            if let Some(r) = bind(b, fd, err) {
                return Some(r);
            }
        }
        for (to, at) in &p.links {
            if libc::symlink(to.as_ptr(), at.as_ptr()) < 0 {
                return Some(die(err, at.as_bytes()));
            }
        }
        let proc_ = c"proc".as_ptr();
        if libc::mkdir(p.proc_dir.as_ptr(), 0o555) < 0
            || libc::mount(
                proc_,
                p.proc_dir.as_ptr(),
                proc_,
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                none,
            ) < 0
        {
            return Some(die(err, b"mounting /proc"));
        }
        for (path, hide) in &p.proc_guarded {
            if let Some(r) = guard_proc(path, *hide, err) {
                return Some(r);
            }
        }
        // pivot_root(".", "."): the old root ends up on top of the new one, then goes.
        let dot = c".".as_ptr();
        if libc::chdir(p.base.as_ptr()) < 0
            || libc::syscall(libc::SYS_pivot_root, dot, dot) < 0
            || libc::umount2(dot, libc::MNT_DETACH) < 0
            || libc::chdir(root) < 0
        {
            return Some(die(err, b"pivot_root into the new root"));
        }
        let ro = libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        if libc::mount(null, root, null, ro, none) < 0 {
            return Some(die(err, b"making the new root read-only"));
        }
        if libc::chdir(p.cwd.as_ptr()) < 0 {
            return Some(die(err, p.cwd.as_bytes()));
        }
        None
    }
}

/// Makes one part of the new /proc read-only, or hides it behind /dev/null (the host's
/// /dev/null, still reachable before the pivot). Absent parts are fine (kernels differ).
///
/// # Safety
/// Only in the cloned child, after /proc is mounted and before pivot_root.
unsafe fn guard_proc(path: &CString, hide: bool, err: RawFd) -> Option<isize> {
    // SAFETY: only called in the cloned child (see the function's contract).
    unsafe {
        let null = std::ptr::null::<libc::c_char>();
        let none = std::ptr::null::<libc::c_void>();
        let src = if hide {
            c"/dev/null".as_ptr()
        } else {
            path.as_ptr()
        };
        if libc::mount(src, path.as_ptr(), null, libc::MS_BIND, none) < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
                return None;
            }
            return Some(die(err, path.as_bytes()));
        }
        let ro = libc::MS_BIND
            | libc::MS_REMOUNT
            | libc::MS_RDONLY
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC;
        if !hide && libc::mount(null, path.as_ptr(), null, ro, none) < 0 {
            return Some(die(err, path.as_bytes()));
        }
        None
    }
}

/// Binds one host path into the new root (read-only unless writable).
///
/// # Safety
/// Only in the cloned child.
unsafe fn bind(b: &Bind, source: RawFd, err: RawFd) -> Option<isize> {
    // SAFETY: only called in the cloned child (see the function's contract).
    unsafe {
        let null = std::ptr::null::<libc::c_char>();
        let none = std::ptr::null::<libc::c_void>();
        let made = if b.dir {
            libc::mkdir(b.target.as_ptr(), 0o755)
        } else {
            // A file to mount over, closed again (an open file keeps the root writable).
            let fd = libc::open(
                b.target.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            );
            if fd >= 0 {
                libc::close(fd);
            }
            fd.min(0)
        };
        if made < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST) {
            return Some(die(err, b.target.as_bytes()));
        }
        // Read-only binds leave submounts out: a remount reaches only the top mount, so a
        // submount brought along would stay writable.
        let flags = if b.writable {
            libc::MS_BIND | libc::MS_REC
        } else {
            libc::MS_BIND
        };
        let src = proc_fd_path(source);
        if libc::mount(src.as_ptr().cast(), b.target.as_ptr(), null, flags, none) < 0 {
            return Some(die(err, b.target.as_bytes()));
        }
        // A remount keeps the flags the host's mount has locked and adds ours.
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(b.target.as_ptr(), &mut st) < 0 {
            return Some(die(err, b.target.as_bytes()));
        }
        let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID;
        for (st_flag, ms_flag) in [
            (libc::ST_NODEV, libc::MS_NODEV),
            (libc::ST_NOEXEC, libc::MS_NOEXEC),
            (libc::ST_NOATIME, libc::MS_NOATIME),
            (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
            (libc::ST_RELATIME, libc::MS_RELATIME),
            (libc::ST_RDONLY, libc::MS_RDONLY),
        ] {
            if st.f_flag & st_flag != 0 {
                flags |= ms_flag;
            }
        }
        if !b.device {
            flags |= libc::MS_NODEV;
        }
        if !b.writable {
            flags |= libc::MS_RDONLY;
        }
        if libc::mount(null, b.target.as_ptr(), null, flags, none) < 0 {
            return Some(die(err, b.target.as_bytes()));
        }
        None
    }
}

/// "/proc/self/fd/N", NUL-terminated, without allocating.
fn proc_fd_path(fd: RawFd) -> [u8; 32] {
    let mut buf = [0u8; 32];
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 10];
    let mut n = fd.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        buf[prefix.len() + i] = *d;
    }
    buf
}

/// No capabilities (unless kept), none regained by execve as root, no new privileges, limits.
///
/// # Safety
/// Only in the cloned child.
unsafe fn drop_privileges(p: &Prepared, err: RawFd) -> Option<isize> {
    // SAFETY: only called in the cloned child (see the function's contract).
    unsafe {
        let core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let mut nofile: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut nofile) < 0 {
            return Some(die(err, b"getrlimit"));
        }
        nofile.rlim_cur = nofile.rlim_max.min(NOFILE);
        nofile.rlim_max = nofile.rlim_cur;
        if libc::setrlimit(libc::RLIMIT_CORE, &core) < 0
            || libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) < 0
        {
            return Some(die(err, b"setrlimit"));
        }
        if !p.keep_capabilities {
            // SECBIT_NOROOT | SECBIT_NOROOT_LOCKED: uid 0 gains nothing at execve.
            check_some!(
                err,
                b"prctl(PR_SET_SECUREBITS)",
                libc::prctl(libc::PR_SET_SECUREBITS, 0x3)
            );
            for cap in 0..=63 {
                if libc::prctl(libc::PR_CAPBSET_DROP, cap) < 0
                    && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
                {
                    return Some(die(err, b"prctl(PR_CAPBSET_DROP)"));
                }
            }
            check_some!(
                err,
                b"prctl(PR_CAP_AMBIENT_CLEAR_ALL)",
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL,
                    0,
                    0,
                    0
                )
            );
        }
        check_some!(
            err,
            b"prctl(PR_SET_NO_NEW_PRIVS)",
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        );
        None
    }
}

/// Puts the program's descriptors at 0, 1, 2, 3, ... and closes every other one but the
/// report pipe (close-on-exec).
///
/// # Safety
/// Only in the cloned child.
unsafe fn place_fds(p: &Prepared, err: RawFd) -> Option<isize> {
    // SAFETY: only called in the cloned child (see the function's contract).
    unsafe {
        // First out of the way (above every target), then into place.
        let floor = (p.fds.len() as i32 + 3).max(err + 1);
        let mut high = Vec::with_capacity(p.fds.len());
        for fd in &p.fds {
            let h = libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, floor);
            if h < 0 {
                return Some(die(err, b"fcntl(F_DUPFD)"));
            }
            high.push(h);
        }
        for (target, h) in high.iter().enumerate() {
            if libc::dup2(*h, target as i32) < 0 {
                return Some(die(err, b"dup2"));
            }
        }
        let first_free = p.fds.len() as u32;
        if err as u32 > first_free {
            libc::syscall(libc::SYS_close_range, first_free, err as u32 - 1, 0);
        }
        libc::syscall(libc::SYS_close_range, err as u32 + 1, u32::MAX, 0);
        None
    }
}

/// Opens the tap device `name` (it must exist and belong to this user, or this user must be
/// allowed to create it) for a VMM in its own network namespace.
pub fn open_tap(name: &str) -> Result<OwnedFd, String> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .map_err(|e| format!("cannot open /dev/net/tun for tap {name}: {e}"))?;
    // struct ifreq: the name, then the flags.
    let mut req = [0u8; 40];
    let bytes = OsStr::new(name).as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(format!("tap name {name:?} is too long"));
    }
    req[..bytes.len()].copy_from_slice(bytes);
    let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as u16;
    req[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a struct ifreq (40 bytes on Linux), which `req` is.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, req.as_mut_ptr()) };
    if r < 0 {
        return Err(format!(
            "cannot attach to tap {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // QEMU and crosvm expect a blocking descriptor.
    // SAFETY: F_SETFL on a descriptor we own.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, 0) };
    Ok(f.into())
}

/// /dev/null for stdin.
pub fn dev_null() -> Result<OwnedFd, String> {
    std::fs::File::open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| format!("/dev/null: {e}"))
}
