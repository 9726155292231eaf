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
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};

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
}

impl Limits {
    /// A 1024×1024 PNG needs about 12 MiB; an SVG within [`super::decode`]'s caps less.
    pub const DEFAULT: Limits = Limits {
        memory: 256 << 20,
        cpu_seconds: 10,
    };
}

/// Decodes `bytes` (a PNG or SVG file) in a decoder process, `program decode-icon`.
pub fn decode_isolated(program: &Path, bytes: &[u8], limits: Limits) -> Result<Icon, IconError> {
    finish(spawn_decoder(program, limits)?, bytes)
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
    } = limits;
    // SAFETY: the closure runs between fork and exec. It only calls close_range(2) and
    // setrlimit(2), which are async-signal-safe, and neither allocates nor takes a lock.
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
            Ok(())
        });
    }
    cmd.spawn().map_err(IconError::Decoder)
}

/// Gives a decoder from [`spawn_decoder`] its input and waits for its answer.
pub fn finish(mut child: Child, bytes: &[u8]) -> Result<Icon, IconError> {
    if let Some(mut stdin) = child.stdin.take() {
        // A decoder that has already ended closes its end; how it ended is told below.
        let _ = stdin.write_all(bytes);
    }
    let out = child.wait_with_output().map_err(IconError::Decoder)?;
    let text = String::from_utf8_lossy(&out.stderr);
    // What it said, on one line, without the standard library's hint about backtraces.
    let said = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect::<Vec<_>>()
        .join(" ");
    let said: String = said.chars().take(MAX_MESSAGE).collect();
    let len = (SIZE * SIZE * 4) as usize;
    match (out.status.code(), out.status.signal()) {
        (Some(0), _) if out.stdout.len() == len => Ok(Icon { bgra: out.stdout }),
        (Some(0), _) => Err(IconError::DecoderDied(format!(
            "answered {} bytes instead of {len}",
            out.stdout.len()
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

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// `bulkhead decode-icon`: reads one icon file from stdin, writes its [`SIZE`]×[`SIZE`] BGRA
/// pixels to stdout and exits 0; or says why not on stderr and exits 1 (2 if the decoder
/// itself could not run).
pub fn decoder_main() -> ExitCode {
    if let Err(e) = confine() {
        eprintln!("cannot confine the icon decoder: {e}");
        return ExitCode::from(2);
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin()
        .lock()
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
    {
        eprintln!("cannot read the icon: {e}");
        return ExitCode::from(2);
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
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot write the icon: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
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
    (libc::SYS_close, "closing the pipes at exit"),
    (libc::SYS_exit, "exit"),
    (libc::SYS_exit_group, "exit"),
];

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
    let arch = if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    };
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| format!("seccomp filter: {e}"))?;
    let program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| format!("seccomp filter: {e}"))?;
    seccompiler::apply_filter(&program).map_err(|e| format!("cannot install seccomp: {e}"))
}
