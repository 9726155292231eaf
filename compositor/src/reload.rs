//! Config reload without restarting the session: the config file is watched (inotify on its
//! directory, since editors replace files rather than write them in place), and the action
//! `reload-config` does the same on demand. A file with an error changes nothing and the user is
//! told why; a good one applies keyboard, bindings, appearance, clipboard and apps at once. VM
//! definitions stay as the session started (their sockets and monitors are made at start).

use std::path::PathBuf;
use std::time::Duration;

use bulkhead_config::Config;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use smithay::reexports::calloop::generic::Generic;
use smithay::reexports::calloop::timer::{TimeoutAction, Timer};
use smithay::reexports::calloop::{Interest, Mode, PostAction};

use crate::domain::Domain;
use crate::state::{Desktop, State};

/// Watches the config file's directory; changes to the file reload it (after a short pause,
/// so an editor's several writes make one reload).
pub fn watch(desk: &mut Desktop) -> Result<(), String> {
    let path = desk.config.source.clone();
    if !path.is_file() {
        return Ok(()); // built-in defaults: nothing to watch
    }
    let path = path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    desk.config.source = path.clone();
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(());
    };
    let name = name.to_os_string();
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .map_err(|e| format!("cannot watch the config file: {e}"))?;
    inotify
        .add_watch(
            dir,
            AddWatchFlags::IN_CLOSE_WRITE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CREATE,
        )
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    desk.loop_handle
        .insert_source(
            Generic::new(inotify, Interest::READ, Mode::Level),
            move |_, inotify, state| {
                let events = inotify.read_events().unwrap_or_default();
                if events
                    .iter()
                    .any(|e| e.name.as_deref() == Some(name.as_os_str()))
                {
                    state.schedule_reload();
                }
                Ok(PostAction::Continue)
            },
        )
        .map_err(|e| format!("cannot watch the config file: {e}"))?;
    Ok(())
}

impl State {
    fn schedule_reload(&mut self) {
        if self.desk.reload_pending {
            return;
        }
        self.desk.reload_pending = true;
        let timer = Timer::from_duration(Duration::from_millis(200));
        let r = self.desk.loop_handle.insert_source(timer, |_, _, state| {
            state.desk.reload_pending = false;
            state.reload_and_tell();
            TimeoutAction::Drop
        });
        if r.is_err() {
            self.desk.reload_pending = false;
        }
    }

    /// Reloads and says how it went in a notification.
    pub fn reload_and_tell(&mut self) {
        let text = match self.reload_config() {
            Ok(t) => t,
            Err(e) => format!("Config not reloaded: {e}"),
        };
        tracing::info!("{text}");
        self.desk
            .notify(&Domain::Host, crate::sanitize::sanitize_title(&text));
    }

    /// Reads the config file again and applies what can change live.
    pub fn reload_config(&mut self) -> Result<String, String> {
        let path: PathBuf = self.desk.config.source.clone();
        let mut new = Config::load(&path).map_err(|e| e.to_string())?;
        let old = &self.desk.config;
        let same_vm = |a: &bulkhead_config::VmConfig, b: &bulkhead_config::VmConfig| {
            a.name == b.name && a.color == b.color && a.spec == b.spec
        };
        let vms_changed = new.vms.len() != old.vms.len()
            || new.vms.iter().zip(&old.vms).any(|(a, b)| !same_vm(a, b))
            || new.vmm != old.vmm;
        if vms_changed {
            new.vms = old.vms.clone();
            new.vmm = old.vmm.clone();
        }
        let outputs_changed = new.outputs != old.outputs;
        let inputs_changed = new.inputs != old.inputs;
        if new.keyboard != old.keyboard {
            let kb = &new.keyboard;
            let xkb = crate::state::xkb_config(kb);
            if let Some(keyboard) = self.desk.keyboard() {
                keyboard
                    .set_xkb_config(self, xkb)
                    .map_err(|e| format!("keyboard layout {:?}: {e:?}", kb.layout))?;
                keyboard.change_repeat_info(kb.repeat_rate, kb.repeat_delay);
            }
        }
        self.desk.config = new;
        self.desk.load_icons();
        let mut waits = Vec::new();
        if outputs_changed {
            // The [[output]] blocks naming outputs the backend drives, applied as one change.
            let heads: Vec<String> = self
                .backend
                .heads(&self.desk)
                .into_iter()
                .map(|h| h.output.name())
                .collect();
            let changes: Vec<_> = self
                .desk
                .config
                .outputs
                .iter()
                .filter(|c| heads.contains(&c.name))
                .map(|c| {
                    (
                        c.name.clone(),
                        c.enable
                            .then(|| crate::backend::OutputChange::from_config(c)),
                    )
                })
                .collect();
            if let Err(e) = self.apply_output_changes(&changes, false) {
                waits.push(format!("monitor settings not applied: {e}"));
            } else {
                self.output_management_refresh();
            }
        }
        if inputs_changed {
            if let crate::backend::Backend::Drm(d) = &mut self.backend {
                d.reconfigure_inputs(&self.desk.config.inputs);
            }
        }
        if let Some(dir) = crate::desktop_dir() {
            if let Err(e) = crate::launcher::write_desktop_files(&self.desk.config, &dir) {
                tracing::warn!("cannot write app entries into {}: {e}", dir.display());
            }
        }
        self.desk.request_redraw();
        if vms_changed {
            waits.push("VM changes apply from the next session".into());
        }
        Ok(if waits.is_empty() {
            "Config reloaded".into()
        } else {
            format!("Config reloaded; {}", waits.join("; "))
        })
    }
}
