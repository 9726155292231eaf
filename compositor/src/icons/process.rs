//! Each icon is decoded in a process of its own: the `bulkhead` binary run as
//! `bulkhead decode-icon`, the file's bytes on its stdin and the icon's pixels on its stdout.
//!
//! An icon file is guest data (build-guest copies it out of a VM image) and the decoders are
//! large (an XML parser, an SVG tree builder, a rasteriser with filters). [`super::decode`]
//! refuses what would cost too much before it draws, but a panic, abort, allocation failure,
//! stack overflow or endless loop missed there would otherwise take the session down with it.
//! In its own process such a failure loses one icon, and the log says how it ended.
//!
//! The process starts with no environment and none of the compositor's descriptors beyond
//! its three pipes, at most [`Limits::memory`] of data, [`Limits::cpu_seconds`] of CPU time,
//! no file writes and no core dump. Before it reads its input it enters a seccomp allow-list
//! of what decoding needs: reading its input, memory, writing its answer, and exiting. It cannot open a file,
//! signal a process or make a socket.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::resource::{setrlimit, Resource};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::{decode, Icon, IconError, MAX_BYTES, SIZE};

/// The `bulkhead` subcommand that decodes one icon.
pub const DECODER_COMMAND: &str = "decode-icon";

/// The program that decodes icons: the running compositor's own binary, which stays
/// reachable here even if an upgrade replaced its file.
pub const DECODER_PROGRAM: &str = "/proc/self/exe";

/// The longest error message kept from a decoder.
const MAX_MESSAGE: usize = 512;

/// What one decoder process may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of data (heap and private mappings: `RLIMIT_DATA`).
    pub memory: u64,
    /// Seconds of CPU time (`RLIMIT_CPU`); it is killed after that.
    pub cpu_seconds: u64,
    /// How long it may take, waiting included; it is killed after that. (One that blocks or
    /// is stopped uses no CPU time.)
    pub timeout: Duration,
}

impl Limits {
    /// A 1024×1024 PNG needs about 12 MiB; an SVG within [`super::decode`]'s caps less.
    pub const DEFAULT: Limits = Limits {
        memory: 256 << 20,
        cpu_seconds: 10,
        timeout: Duration::from_secs(30),
    };
}

/// Decodes `bytes` (a PNG or SVG file) in a decoder process, `program decode-icon`.
pub fn decode_isolated(program: &Path, bytes: &[u8], limits: Limits) -> Result<Icon, IconError> {
    finish(spawn_decoder(program, limits)?, bytes, limits.timeout)
}

/// Starts a decoder process, confined as the module docs say.
pub fn spawn_decoder(program: &Path, limits: Limits) -> Result<Child, IconError> {
    let mut cmd = Command::new(program);
    cmd.arg(DECODER_COMMAND)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let Limits {
        memory,
        cpu_seconds,
        ..
    } = limits;
    // SAFETY: the closure runs between fork and exec. It only calls close_range(2),
    // setrlimit(2) and setpriority(2), which are async-signal-safe, and neither allocates
    // nor takes a lock.
    unsafe {
        cmd.pre_exec(move || {
            // Every descriptor but the three pipes closes at exec (std's own exec-error
            // pipe is close-on-exec already, so it keeps working).
            // SAFETY: close_range only changes this (forked) process's descriptor flags.
            let r = libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            if r != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let limit = |resource, soft, hard| {
                setrlimit(resource, soft, hard).map_err(std::io::Error::from)
            };
            limit(Resource::RLIMIT_DATA, memory, memory)?;
            // At the soft limit the kernel sends SIGXCPU, which ends the process.
            limit(Resource::RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)?;
            limit(Resource::RLIMIT_FSIZE, 0, 0)?;
            limit(Resource::RLIMIT_CORE, 0, 0)?;
            // Behind everything the session does: a costly icon waits for idle CPU.
            // SAFETY: setpriority only changes this process's nice value.
            if libc::setpriority(libc::PRIO_PROCESS, 0, 19) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(IconError::Decoder)
}

/// The most a decoder may say on stderr before it is no longer read.
const MAX_STDERR: usize = 64 * 1024;

/// Gives a decoder from [`spawn_decoder`] its input and waits, at most `timeout`, for its
/// answer, reading at most one icon's bytes and [`MAX_STDERR`] of messages.
pub fn finish(mut child: Child, bytes: &[u8], timeout: Duration) -> Result<Icon, IconError> {
    let len = (SIZE * SIZE * 4) as usize;
    let talk = exchange(&mut child, bytes, len, timeout);
    // Whatever happened, the decoder does not outlive this call.
    if !matches!(talk, Ok(Exchange { ended: true, .. })) {
        let _ = child.kill();
    }
    let status = child.wait().map_err(IconError::Decoder)?;
    let talk = talk.map_err(IconError::Decoder)?;
    if !talk.ended {
        return Err(IconError::DecoderDied(format!(
            "took longer than {timeout:?} and was killed"
        )));
    }
    // What it said, on one line, without control characters or the standard library's hint
    // about backtraces.
    let text = String::from_utf8_lossy(&talk.stderr);
    let said = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect::<Vec<_>>()
        .join(" ");
    let said: String = said
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE)
        .collect();
    match (status.code(), status.signal()) {
        (Some(0), _) if talk.stdout.len() == len => Ok(Icon { bgra: talk.stdout }),
        (Some(0), _) => Err(IconError::DecoderDied(format!(
            "answered {} bytes instead of {len}",
            talk.stdout.len()
        ))),
        (Some(1), _) => Err(IconError::Refused(said)),
        (Some(code), _) => Err(IconError::DecoderDied(format!(
            "exited with status {code}: {said}"
        ))),
        (None, Some(signal)) => Err(IconError::DecoderDied(format!(
            "was killed by {}{}{}{said}",
            signal_name(signal),
            match signal {
                libc::SIGXCPU => " (it ran out of CPU time)",
                libc::SIGSYS => " (a system call outside its allow-list, or an abort)",
                _ => "",
            },
            if said.is_empty() { "" } else { "; it said: " },
        ))),
        (None, None) => Err(IconError::DecoderDied("ended without a status".into())),
    }
}

/// What a decoder answered.
struct Exchange {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// It exited, and its pipes were read to their end, before the deadline.
    ended: bool,
}

/// Writes `input` to the child's stdin and reads its stdout (at most `answer` + 1 bytes) and
/// stderr (at most [`MAX_STDERR`]) until it exits or `timeout` passes, waiting on the pipes
/// and the process (a pidfd) together.
fn exchange(
    child: &mut Child,
    input: &[u8],
    answer: usize,
    timeout: Duration,
) -> std::io::Result<Exchange> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let deadline = Instant::now() + timeout;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id(), 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor was just opened and is owned by nothing else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    let file = |fd: OwnedFd| std::fs::File::from(fd);
    let mut stdin = child.stdin.take().map(|p| file(p.into()));
    let mut stdout = child.stdout.take().map(|p| file(p.into()));
    let mut stderr = child.stderr.take().map(|p| file(p.into()));
    for fd in [
        stdin.as_ref().map(|f| f.as_fd()),
        stdout.as_ref().map(|f| f.as_fd()),
        stderr.as_ref().map(|f| f.as_fd()),
    ]
    .into_iter()
    .flatten()
    {
        nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut written = 0;
    let mut exited = false;
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if exited && stdout.is_none() && stderr.is_none() {
            return Ok(Exchange {
                stdout: out,
                stderr: err,
                ended: true,
            });
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Exchange {
                stdout: out,
                stderr: err,
                ended: false,
            });
        }
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        let slots = [
            stdin
                .as_ref()
                .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLOUT)),
            stdout
                .as_ref()
                .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN)),
            stderr
                .as_ref()
                .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN)),
        ];
        let present: Vec<bool> = slots.iter().map(Option::is_some).collect();
        fds.extend(slots.into_iter().flatten());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut at = 1;
        let mut next = |here: bool| {
            let r = here && ready.get(at).copied().unwrap_or(false);
            at += usize::from(here);
            r
        };
        let (w, o, e) = (next(present[0]), next(present[1]), next(present[2]));
        exited |= ready[0];
        if w {
            if let Some(pipe) = stdin.as_mut() {
                match pipe.write(&input[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    // It ended or closed its end: how it ended tells why.
                    Err(_) => written = input.len(),
                }
            }
            if written >= input.len() {
                stdin = None;
            }
        }
        for (ready, pipe, buf, cap) in [
            (o, &mut stdout, &mut out, answer + 1),
            (e, &mut stderr, &mut err, MAX_STDERR),
        ] {
            if !ready {
                continue;
            }
            if let Some(p) = pipe.as_mut() {
                match p.read(&mut chunk) {
                    Ok(0) => *pipe = None,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n.min(cap.saturating_sub(buf.len()))]);
                        if buf.len() >= cap {
                            *pipe = None; // enough: the rest is not read
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => *pipe = None,
                }
            }
        }
    }
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// `bulkhead decode-icon`: reads one icon file from stdin, writes its [`SIZE`]×[`SIZE`] BGRA
/// pixels to stdout and exits 0; or says why not on stderr and exits 1 (2 if the decoder
/// itself could not run). It ends with `_exit`: no library's exit handlers run under its
/// filter.
pub fn decoder_main() -> ! {
    let code = match confine() {
        Ok(()) => decode_stdin(),
        Err(e) => {
            eprintln!("cannot confine the icon decoder: {e}");
            2
        }
    };
    // SAFETY: _exit ends the process at once; nothing here relies on exit handlers (stdout
    // was flushed by decode_stdin).
    unsafe { libc::_exit(code) }
}

fn decode_stdin() -> i32 {
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
    {
        eprintln!("cannot read the icon: {e}");
        return 2;
    }
    let result = if bytes.len() as u64 > MAX_BYTES {
        Err(IconError::TooLarge)
    } else {
        decode(&bytes)
    };
    match result {
        Ok(icon) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(&icon.bgra).and_then(|()| out.flush()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("cannot write the icon: {e}");
                    2
                }
            }
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

/// What a decoder may do, and why.
const DECODER_SYSCALLS: &[(i64, &str)] = &[
    (libc::SYS_read, "the icon file from stdin"),
    (libc::SYS_write, "the answer and error messages"),
    (libc::SYS_brk, "memory"),
    (libc::SYS_mmap, "memory (never executable: see confine)"),
    (libc::SYS_munmap, "memory"),
    (libc::SYS_mremap, "memory"),
    (libc::SYS_madvise, "memory"),
    (
        libc::SYS_futex,
        "the standard library's locks (stdout, stderr)",
    ),
    (libc::SYS_getrandom, "hash maps"),
    (libc::SYS_sigaltstack, "the stack-overflow handler"),
    (libc::SYS_rt_sigprocmask, "the panic and abort paths"),
    (libc::SYS_gettid, "a panic message names its thread"),
    (libc::SYS_rt_sigreturn, "returning from a signal handler"),
    (libc::SYS_exit, "exit"),
    (libc::SYS_exit_group, "exit"),
];

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the icon decoder's seccomp filter knows x86_64 and aarch64 only");

/// Installs the decoder's seccomp filter: [`DECODER_SYSCALLS`], `mmap` without `PROT_EXEC`;
/// anything else kills the process.
fn confine() -> Result<(), String> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DECODER_SYSCALLS
        .iter()
        .map(|(nr, _)| (*nr, Vec::new()))
        .collect();
    let not_executable = SeccompCondition::new(
        2,
        SeccompCmpArgLen::Dword,
        SeccompCmpOp::MaskedEq(libc::PROT_EXEC as u64),
        0,
    )
    .and_then(|c| SeccompRule::new(vec![c]))
    .map_err(|e| e.to_string())?;
    rules.insert(libc::SYS_mmap, vec![not_executable]);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        ARCH,
    )
    .map_err(|e| format!("seccomp filter: {e}"))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp filter: {e}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("cannot install seccomp: {e}"))
}
