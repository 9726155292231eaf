//! Accepting clients on the host's and the VMs' listening sockets, without spinning when the
//! process runs out of file descriptors, and raising the fd limit at start.

use std::cell::Cell;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::{Interest, LoopHandle, Mode, PostAction, RegistrationToken};

use crate::state::State;

/// How long a listening socket is not watched after accept failed for lack of fds.
pub const BACKOFF: Duration = Duration::from_millis(500);

/// Whether `e` says the process or the system has no fd left (the pending connection stays
/// queued, so its socket stays readable).
pub fn out_of_fds(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno) if libc_errno == nix::libc::EMFILE || libc_errno == nix::libc::ENFILE
    )
}

/// Watches the listening socket `fd` (non-blocking): on readiness, takes every pending
/// connection with `accept` (`Ok(None)`: none left) and hands each to `on_client`. Out of fds,
/// it stops watching for [`BACKOFF`] rather than wake the loop again at once for a connection
/// it cannot take.
pub fn watch(
    handle: &LoopHandle<'static, State>,
    name: String,
    fd: OwnedFd,
    mut accept: impl FnMut() -> io::Result<Option<UnixStream>> + 'static,
    mut on_client: impl FnMut(&mut State, UnixStream) + 'static,
) -> Result<RegistrationToken, String> {
    let me: Rc<Cell<Option<RegistrationToken>>> = Rc::default();
    let me_inner = me.clone();
    let token = handle
        .insert_source(
            Generic::new(fd, Interest::READ, Mode::Level),
            move |_, _, state| loop {
                match accept() {
                    Ok(Some(stream)) => on_client(state, stream),
                    Ok(None) => return Ok(PostAction::Continue),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if out_of_fds(&e) => {
                        tracing::warn!(
                            "cannot accept a client on {name}: {e}; trying again in {} ms",
                            BACKOFF.as_millis()
                        );
                        back_off(state, me_inner.get());
                        return Ok(PostAction::Disable);
                    }
                    Err(e) => {
                        tracing::warn!("accept on {name} failed: {e}");
                        return Ok(PostAction::Continue);
                    }
                }
            },
        )
        .map_err(|e| e.to_string())?;
    me.set(Some(token));
    Ok(token)
}

/// Watches the source `token` again after [`BACKOFF`].
fn back_off(state: &mut State, token: Option<RegistrationToken>) {
    let Some(token) = token else { return };
    let timer =
        state
            .desk
            .loop_handle
            .insert_source(Timer::from_duration(BACKOFF), move |_, _, state| {
                if let Err(e) = state.desk.loop_handle.enable(&token) {
                    tracing::error!("cannot watch a listening socket again: {e}");
                }
                TimeoutAction::Drop
            });
    if let Err(e) = timer {
        tracing::error!("cannot schedule accepting again: {e}");
    }
}

/// The fd limits the compositor started with, restored in the programs it starts.
static STARTED_WITH: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();

/// Raises the soft limit on open files to the hard limit (a session with many VM clients
/// needs more than the usual 1024), and returns the limit in force. Programs the compositor
/// starts get the old soft limit back ([`restore_fd_limit`]): some still use `select()`.
pub fn raise_fd_limit() -> io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    let _ = STARTED_WITH.set((soft, hard));
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok(hard.max(soft))
}

/// Has `cmd` start with the fd limits the compositor started with.
pub fn restore_fd_limit(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let Some(&(soft, hard)) = STARTED_WITH.get() else {
        return;
    };
    // SAFETY: the closure runs between fork and exec; it only calls setrlimit(2), which is
    // async-signal-safe, and neither allocates nor takes locks.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, soft, hard)
                .map_err(io::Error::from)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_exhaustion_is_told_apart() {
        assert!(out_of_fds(&io::Error::from_raw_os_error(nix::libc::EMFILE)));
        assert!(out_of_fds(&io::Error::from_raw_os_error(nix::libc::ENFILE)));
        assert!(!out_of_fds(&io::Error::from_raw_os_error(
            nix::libc::ECONNABORTED
        )));
    }

    #[test]
    fn the_soft_fd_limit_is_raised_to_the_hard_one() {
        use nix::sys::resource::{getrlimit, Resource};
        let limit = raise_fd_limit().unwrap();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, hard);
        assert_eq!(limit, hard);
    }
}
