//! X11 apps in the guest: Xwayland on demand, with its window manager in the proxy.
//!
//! The proxy listens on the X display's socket (`/tmp/.X11-unix/X<n>`). The first X client to
//! connect starts Xwayland (rootless, shm, `-terminate`: it exits when its last client goes),
//! handed that socket (`-listenfd`), one end of a socket pair as its Wayland connection
//! (`WAYLAND_SOCKET`, relayed to the host over cross-domain like any app's) and another as
//! its window manager's (`-wm`, [`crate::xwm`]). The window manager tells the relay which
//! surface shows which X window and how ([`crate::crossdomain::relay_x`]); the host never sees
//! X11. When Xwayland exits, the proxy listens again.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::crossdomain::{self, xroles::Notice, Opener, XLink};
use crate::xwm::Wm;

/// Whether Xwayland is installed (on PATH).
pub fn installed() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join("Xwayland"))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// The display's socket in `dir` (normally `/tmp/.X11-unix`), made if missing.
pub fn listen(dir: &Path, display: u32) -> io::Result<(UnixListener, PathBuf)> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777))?;
    }
    let path = dir.join(format!("X{display}"));
    // A socket left by an earlier proxy or server that nobody answers on any more.
    if path.exists() && UnixStream::connect(&path).is_err() {
        std::fs::remove_file(&path)?;
    }
    Ok((UnixListener::bind(&path)?, path))
}

/// Serves X display `display` on `listener` for ever: Xwayland is started for the first
/// client and again after it exits.
pub fn serve(listener: UnixListener, display: u32, open: Opener) -> io::Result<()> {
    loop {
        // A client knocks: the connection waits in the backlog for Xwayland.
        let mut fds = [PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        if !fds[0].any().unwrap_or(false) {
            continue;
        }
        if let Err(e) = run_xwayland(&listener, display, &open) {
            eprintln!("bulkhead-wl-proxy: Xwayland: {e}");
            // Not again at once for the same knock: wait for the next client.
            let _ = listener.accept();
        }
    }
}

/// One Xwayland, from its start to its exit.
fn run_xwayland(listener: &UnixListener, display: u32, open: &Opener) -> io::Result<()> {
    let (wayland, wayland_theirs) = UnixStream::pair()?;
    let (wm_ours, wm_theirs) = UnixStream::pair()?;
    // Above 5, so that putting them at 3, 4 and 5 overwrites none of them.
    let high = |fd: std::os::fd::BorrowedFd<'_>| -> io::Result<OwnedFd> {
        let raw = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10))?;
        // SAFETY: fcntl just returned this new descriptor, owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    };
    let fds = [
        high(listener.as_fd())?,
        high(wm_theirs.as_fd())?,
        high(wayland_theirs.as_fd())?,
    ];
    let raw = [fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()];
    let mut cmd = Command::new("Xwayland");
    cmd.arg(format!(":{display}"))
        .args(["-rootless", "-shm", "-nolisten", "tcp", "-terminate"])
        .args(["-listenfd", "3", "-wm", "4"])
        .env("WAYLAND_SOCKET", "5")
        .stdin(Stdio::null());
    // SAFETY: between fork and exec only dup2(2), which is async-signal-safe, places the
    // three descriptors at 3, 4 and 5 without close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            for (to, from) in [(3, raw[0]), (4, raw[1]), (5, raw[2])] {
                if nix::libc::dup2(from, to) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot start Xwayland: {e}")))?;
    drop(fds);
    drop((wayland_theirs, wm_theirs));
    eprintln!("bulkhead-wl-proxy: Xwayland started for :{display}");

    let (changes_tx, changes_rx) = mpsc::channel();
    let (notices_tx, notices_rx) = mpsc::channel();
    // Never full for the relay: a window manager busy elsewhere wakes anyway.
    let (wake_r, wake_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    nix::fcntl::fcntl(
        wake_w.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )?;
    let link = XLink {
        changes: changes_rx,
        notices: notices_tx,
        wake: wake_w,
    };
    let open2 = open.clone();
    let relay = std::thread::spawn(move || {
        let r = crossdomain::relay_x(wayland, &open2, link);
        // Said now: Xwayland may outlive its connection for a while.
        if let Err(e) = &r {
            eprintln!("bulkhead-wl-proxy: Xwayland's connection: {e}");
        }
        r
    });
    let wm = std::thread::spawn(move || manage(wm_ours, changes_tx, notices_rx, wake_r));
    let status = child.wait()?;
    eprintln!("bulkhead-wl-proxy: Xwayland for :{display} ended: {status}");
    let _ = relay.join();
    if let Ok(Err(e)) = wm.join() {
        eprintln!("bulkhead-wl-proxy: the X window manager: {e}");
    }
    Ok(())
}

/// The window manager's thread: X events become changes for the relay; what the relay
/// heard of the host becomes X requests.
fn manage(
    stream: UnixStream,
    changes: mpsc::Sender<crate::xwm::Change>,
    notices: mpsc::Receiver<Notice>,
    wake: OwnedFd,
) -> Result<(), String> {
    let mut wm = Wm::new(stream).map_err(|e| e.to_string())?;
    loop {
        while let Ok(n) = notices.try_recv() {
            let r = match n {
                Notice::Shown(w) => wm.shown(w),
                Notice::Configure {
                    window,
                    width,
                    height,
                    fullscreen,
                    maximized,
                } => wm.configure(window, width, height, fullscreen, maximized),
                Notice::Close(w) => wm.close(w),
                Notice::Focus(w) => wm.focus(w),
                Notice::Pointer(w) => {
                    wm.pointer(w);
                    Ok(())
                }
                Notice::Offer { which, types } => wm.offer(which, types),
                Notice::Send { which, mime, fd } => match fd.into_fd() {
                    Ok(fd) => wm.send(which, &mime, fd),
                    Err(e) => Err(e.into()),
                },
            };
            r.map_err(|e| e.to_string())?;
        }
        // Also what arrived while those waited for their replies.
        for change in wm.dispatch().map_err(|e| e.to_string())? {
            if changes.send(change).is_err() {
                return Ok(()); // the relay ended
            }
        }
        // A transfer under way is given up on after a while even if nothing happens.
        let timeout = if wm.busy() {
            PollTimeout::from(1000u16)
        } else {
            PollTimeout::NONE
        };
        let mut fds = vec![
            PollFd::new(wm.fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        fds.extend(
            wm.pipes()
                .into_iter()
                .map(|p| PollFd::new(p, PollFlags::POLLIN)),
        );
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.to_string()),
        }
        if fds[1].any().unwrap_or(false) {
            let mut buf = [0u8; 64];
            let _ = nix::unistd::read(wake.as_raw_fd(), &mut buf);
        }
        if fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLHUP | PollFlags::POLLERR))
        {
            return Ok(()); // Xwayland went
        }
    }
}
