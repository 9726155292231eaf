//! App icons are decoded in a confined process of their own (compositor/src/icons/process.rs):
//! the real `bulkhead decode-icon`, as the compositor runs it.

use std::path::Path;

use bulkhead_compositor::icons::{
    decode, decode_isolated, finish, spawn_decoder, IconError, Limits, SIZE,
};

fn program() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bulkhead"))
}

fn png(side: u32, rgb: [u8; 3]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, side, side);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&rgb.repeat((side * side) as usize))
            .unwrap();
    }
    out
}

/// The decoder process answers what decoding here would, and refuses what decoding here
/// refuses, with the same reason.
#[test]
fn a_decoder_process_answers_as_the_decoder() {
    let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><circle cx="4" cy="4" r="3" fill="#ff8000"/></svg>"##;
    for bytes in [png(64, [0x20, 0x40, 0xff]), svg.to_vec()] {
        let there = decode_isolated(program(), &bytes, Limits::DEFAULT).unwrap();
        assert_eq!(there, decode(&bytes).unwrap());
        assert_eq!(there.bgra.len(), (SIZE * SIZE * 4) as usize);
    }
    let ellipse = include_bytes!("../fuzz/corpus/icon/refused-huge-ellipse.svg");
    match decode_isolated(program(), ellipse, Limits::DEFAULT) {
        Err(IconError::Refused(why)) => {
            assert_eq!(why, decode(ellipse).unwrap_err().to_string());
            assert!(why.contains("reaches far outside the image"), "{why}");
        }
        other => panic!("the huge ellipse: {other:?}"),
    }
    match decode_isolated(program(), b"not an image", Limits::DEFAULT) {
        Err(IconError::Refused(why)) => assert!(why.contains("neither a PNG nor an SVG"), "{why}"),
        other => panic!("text: {other:?}"),
    }
}

/// Waits until the decoder `child` has entered its seccomp filter (it then blocks reading
/// stdin) and returns its /proc/PID/status.
fn confined_status(child: &std::process::Child) -> String {
    let path = format!("/proc/{}/status", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = std::fs::read_to_string(&path).unwrap();
        if status.lines().any(|l| l == "Seccomp:\t2") {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no seccomp filter:\n{status}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A decoder that fails hard (here it runs out of memory: a 1024×1024 PNG, about 8 MiB of
/// buffers, with 2 MiB more than the decoder has when it starts) dies alone: this process
/// gets an error saying how it ended, and the next decoder works.
#[test]
fn a_decoder_that_dies_loses_only_its_icon() {
    // What a decoder's data comes to before it reads its input.
    let idle = spawn_decoder(program(), Limits::DEFAULT).unwrap();
    let status = confined_status(&idle);
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmData:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmData in\n{status}"));
    drop(finish(idle, b"", Limits::DEFAULT.timeout));
    let big = png(1024, [0xff, 0, 0]);
    let tight = Limits {
        memory: (kib << 10) + (2 << 20),
        ..Limits::DEFAULT
    };
    match decode_isolated(program(), &big, tight) {
        Err(IconError::DecoderDied(how)) => {
            assert!(how.contains("was killed by SIG"), "{how}");
            assert!(how.contains("memory allocation"), "{how}");
        }
        other => panic!("with {} KiB: {other:?}", tight.memory >> 10),
    }
    let icon = decode_isolated(program(), &big, Limits::DEFAULT).unwrap();
    assert_eq!(&icon.bgra[..4], &[0, 0, 0xff, 0xff]);
}

/// A decoder that never answers (here it is stopped, so it uses no CPU time) is killed at
/// its deadline, and the call says so.
#[test]
fn a_decoder_that_never_answers_is_killed_at_its_deadline() {
    let child = spawn_decoder(program(), Limits::DEFAULT).unwrap();
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let started = std::time::Instant::now();
    match finish(
        child,
        &png(16, [0, 0, 0xff]),
        std::time::Duration::from_secs(1),
    ) {
        Err(IconError::DecoderDied(how)) => assert!(how.contains("took longer than 1s"), "{how}"),
        other => panic!("a stopped decoder: {other:?}"),
    }
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    // It is gone (reaped), not left stopped.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

/// Before it reads a byte of the icon, the decoder runs under its seccomp filter, with no
/// new privileges, its memory, CPU, file-size and core limits, and no descriptor but its
/// three pipes.
#[test]
fn the_decoder_is_confined_before_it_reads_the_icon() {
    let limits = Limits {
        memory: 96 << 20,
        cpu_seconds: 7,
        ..Limits::DEFAULT
    };
    // A descriptor of this process that the decoder must not inherit, even without
    // close-on-exec.
    let kept = std::fs::File::open(env!("CARGO_MANIFEST_DIR")).unwrap();
    use std::os::fd::AsRawFd;
    nix::fcntl::fcntl(
        kept.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let child = spawn_decoder(program(), limits).unwrap();
    let proc = format!("/proc/{}", child.id());
    let status = confined_status(&child);
    assert!(status.lines().any(|l| l == "NoNewPrivs:\t1"), "{status}");
    let rlimits = std::fs::read_to_string(format!("{proc}/limits")).unwrap();
    let limit = |name: &str| {
        let line = rlimits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{rlimits}"));
        line[name.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mib96 = (96u64 << 20).to_string();
    assert_eq!(limit("Max data size"), [mib96.as_str(), mib96.as_str()]);
    assert_eq!(limit("Max cpu time"), ["7", "8"]);
    assert_eq!(limit("Max file size"), ["0", "0"]);
    assert_eq!(limit("Max core file size"), ["0", "0"]);
    let fds: Vec<_> = std::fs::read_dir(format!("{proc}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut fds: Vec<u32> = fds.iter().map(|f| f.parse().unwrap()).collect();
    fds.sort();
    assert_eq!(fds, [0, 1, 2], "the decoder inherited descriptors");
    drop(kept);
    // Nice 19: behind everything the session does.
    let stat = std::fs::read_to_string(format!("{proc}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    let nice = after_name.split_whitespace().nth(16).unwrap();
    assert_eq!(nice, "19", "{stat}");
    let environ = std::fs::read(format!("{proc}/environ")).unwrap();
    assert!(environ.is_empty(), "the decoder has an environment");
    // And it still decodes, under those limits.
    let icon = finish(child, &png(16, [0, 0xff, 0]), limits.timeout).unwrap();
    assert_eq!(&icon.bgra[..4], &[0, 0xff, 0, 0xff]);
}
