//! The session's own start-up and idle behaviour from `[session]`: autostart commands, and the
//! lock command run after `idle-lock` without input (unless idle is inhibited or the screen is
//! already locked).

use std::time::{Duration, Instant};

use smithay::reexports::calloop::timer::{TimeoutAction, Timer};

use crate::state::State;

/// Opens the desktop session's log, `$XDG_STATE_HOME/bulkhead/session.log` (default
/// `~/.local/state`), keeping the previous session's as `session.log.old`: a display manager
/// may send the session's stderr nowhere, and a session that failed must leave its reason
/// where the user can read it after they are back at the greeter. `None` (and a warning on
/// stderr) when it cannot be made.
pub fn open_session_log() -> Option<(std::path::PathBuf, std::fs::File)> {
    let dir = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/state"))
        })?
        .join("bulkhead");
    let open = || -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("session.log");
        match std::fs::rename(&path, dir.join("session.log.old")) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, file))
    };
    match open() {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!(
                "bulkhead: cannot write the session log in {}: {e}",
                dir.display()
            );
            None
        }
    }
}

impl State {
    /// Runs a host command line through `sh -c` with the host socket.
    pub fn spawn_host(&mut self, cmd: &str) -> Result<(), String> {
        let mut c = std::process::Command::new("/bin/sh");
        c.arg("-c")
            .arg(cmd)
            .envs(self.session_environment())
            .stdin(std::process::Stdio::null());
        bulkhead_vmm::monitor::unblock_signals_in_child(&mut c);
        crate::accept::restore_fd_limit(&mut c);
        let child = c.spawn().map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
        // Reaped within a second of its exit (`Desktop::reap_children`), so no program the
        // session started stays a zombie until logout.
        self.desk.children.push(child);
        Ok(())
    }

    /// The variables a session's programs need to find it: the host socket, the desktop's
    /// name and, while Xwayland runs, the X display.
    pub fn session_environment(&self) -> Vec<(String, String)> {
        let mut vars = vec![
            (
                "WAYLAND_DISPLAY".to_string(),
                self.desk.host_socket.to_string_lossy().into_owned(),
            ),
            ("XDG_CURRENT_DESKTOP".to_string(), "Bulkhead".to_string()),
            ("XDG_SESSION_TYPE".to_string(), "wayland".to_string()),
        ];
        if let Some(n) = self.desk.xwayland.display {
            vars.push(("DISPLAY".to_string(), format!(":{n}")));
        }
        vars
    }

    /// Hands the session's variables to the systemd user manager and the D-Bus activation
    /// environment, so programs they start (portals, notification daemons, apps from a
    /// launcher) find this session. Only for the real session: a nested or headless Bulkhead
    /// must not point the user's services at itself. `[session] export-environment` decides
    /// otherwise.
    pub fn export_environment(&mut self) {
        let wanted = self
            .desk
            .config
            .session
            .export_environment
            .unwrap_or(matches!(self.backend, crate::backend::Backend::Drm(_)));
        if !wanted {
            return;
        }
        let vars = self.session_environment();
        for argv in export_commands(&vars) {
            let mut c = std::process::Command::new(&argv[0]);
            c.args(&argv[1..])
                .envs(vars.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null());
            bulkhead_vmm::monitor::unblock_signals_in_child(&mut c);
            crate::accept::restore_fd_limit(&mut c);
            match c.spawn() {
                // Reaped off the event loop: a hung bus must not stall the session.
                Ok(mut child) => {
                    let what = argv[0].clone();
                    std::thread::spawn(move || match child.wait() {
                        Ok(s) if !s.success() => tracing::warn!("{what} failed: {s}"),
                        Err(e) => tracing::warn!("{what}: {e}"),
                        Ok(_) => {}
                    });
                }
                Err(e) => tracing::info!(
                    "cannot run {}: {e} (environment not exported there)",
                    argv[0]
                ),
            }
        }
    }

    /// Starts the autostart commands and the idle watch.
    pub fn start_session(&mut self) {
        self.export_environment();
        for cmd in self.desk.config.session.autostart.clone() {
            if let Err(e) = self.spawn_host(&cmd) {
                tracing::warn!("autostart: {e}");
                self.desk.notify(
                    &crate::domain::Domain::Host,
                    format!("Autostart failed: {e}"),
                );
            }
        }
        // Once a second: the idle watch, and the exit status of started programs that ended
        // (no zombie lives longer than that, and the event loop's hot path stays free of it).
        let timer = Timer::from_duration(Duration::from_secs(1));
        let r = self.desk.loop_handle.insert_source(timer, |_, _, state| {
            state.check_idle(Instant::now());
            state.desk.reap_children();
            TimeoutAction::ToDuration(Duration::from_secs(1))
        });
        if let Err(e) = r {
            tracing::warn!("no idle lock and no reaping of started programs: {e}");
        }
    }

    fn check_idle(&mut self, now: Instant) {
        // What is visible changes without telling us (a window moved off every output):
        // idle watchers hear the current answer every second.
        self.update_idle_inhibit();
        let s = &self.desk.config.session;
        let (Some(after), Some(lock)) = (s.idle_lock, s.lock.clone()) else {
            return;
        };
        let idle = now.duration_since(self.desk.last_activity) >= Duration::from_secs(after.0);
        let inhibited = self.desk.idle_inhibited();
        if idle && !inhibited && !self.desk.idle_locked && !self.desk.lock.is_locked() {
            self.desk.idle_locked = true;
            tracing::info!("idle for {}s: locking", after.0);
            if let Err(e) = self.spawn_host(&lock) {
                tracing::warn!("idle lock: {e}");
            }
        }
    }
}

/// The commands that export `vars` (already in their environment) to the systemd user manager
/// and the D-Bus activation environment.
pub fn export_commands(vars: &[(String, String)]) -> Vec<Vec<String>> {
    let names: Vec<String> = vars.iter().map(|(k, _)| k.clone()).collect();
    let mut systemd = vec![
        "systemctl".to_string(),
        "--user".into(),
        "import-environment".into(),
    ];
    systemd.extend(names.iter().cloned());
    let mut dbus = vec!["dbus-update-activation-environment".to_string()];
    dbus.extend(names);
    vec![systemd, dbus]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_variables_go_to_systemd_and_dbus_by_name() {
        let vars = vec![
            ("WAYLAND_DISPLAY".to_string(), "wayland-1".to_string()),
            ("XDG_CURRENT_DESKTOP".to_string(), "Bulkhead".to_string()),
            ("DISPLAY".to_string(), ":0".to_string()),
        ];
        let cmds = export_commands(&vars);
        assert_eq!(
            cmds[0],
            [
                "systemctl",
                "--user",
                "import-environment",
                "WAYLAND_DISPLAY",
                "XDG_CURRENT_DESKTOP",
                "DISPLAY"
            ]
        );
        assert_eq!(
            cmds[1],
            [
                "dbus-update-activation-environment",
                "WAYLAND_DISPLAY",
                "XDG_CURRENT_DESKTOP",
                "DISPLAY"
            ]
        );
        // Values never appear on a command line (they come through the environment).
        assert!(cmds.iter().flatten().all(|a| a != "wayland-1" && a != ":0"));
    }
}
