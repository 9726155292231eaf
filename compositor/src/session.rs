//! The session's own start-up and idle behaviour from `[session]`: autostart commands, and the
//! lock command run after `idle-lock` without input (unless idle is inhibited or the screen is
//! already locked).

use std::time::{Duration, Instant};

use smithay::reexports::calloop::timer::{TimeoutAction, Timer};

use crate::state::State;

impl State {
    /// Runs a host command line through `sh -c` with the host socket.
    pub fn spawn_host(&mut self, cmd: &str) -> Result<(), String> {
        let mut c = std::process::Command::new("/bin/sh");
        c.arg("-c")
            .arg(cmd)
            .env("WAYLAND_DISPLAY", &self.desk.host_socket)
            .env("XDG_CURRENT_DESKTOP", "Bulkhead")
            .stdin(std::process::Stdio::null());
        if let Some(n) = self.desk.xwayland.display {
            c.env("DISPLAY", format!(":{n}"));
        }
        bulkhead_vmm::monitor::unblock_signals_in_child(&mut c);
        c.spawn().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        Ok(())
    }

    /// Starts the autostart commands and the idle watch.
    pub fn start_session(&mut self) {
        for cmd in self.desk.config.session.autostart.clone() {
            if let Err(e) = self.spawn_host(&cmd) {
                tracing::warn!("autostart: {e}");
                self.desk.notify(
                    &crate::domain::Domain::Host,
                    format!("Autostart failed: {e}"),
                );
            }
        }
        let timer = Timer::from_duration(Duration::from_secs(1));
        let r = self.desk.loop_handle.insert_source(timer, |_, _, state| {
            state.check_idle(Instant::now());
            TimeoutAction::ToDuration(Duration::from_secs(1))
        });
        if let Err(e) = r {
            tracing::warn!("no idle lock: {e}");
        }
    }

    fn check_idle(&mut self, now: Instant) {
        let s = &self.desk.config.session;
        let (Some(after), Some(lock)) = (s.idle_lock, s.lock.clone()) else {
            return;
        };
        let idle = now.duration_since(self.desk.last_activity) >= Duration::from_secs(after.0);
        let inhibited = !self.desk.idle_inhibitors.is_empty();
        if idle && !inhibited && !self.desk.idle_locked && !self.desk.lock.is_locked() {
            self.desk.idle_locked = true;
            tracing::info!("idle for {}s: locking", after.0);
            if let Err(e) = self.spawn_host(&lock) {
                tracing::warn!("idle lock: {e}");
            }
        }
    }
}
