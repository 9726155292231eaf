//! Bulkhead, the compositor: a Wayland session whose clients belong to security domains (the
//! host or a VM), decided by the socket they connect to, and framed by the compositor in
//! their domain's colour.

pub mod accept;
pub mod backend;
pub mod clipboard;
pub mod cursor;
pub mod domain;
pub mod focus;
pub mod frame;
pub mod fuzzing;
pub mod handlers;
pub mod icons;
pub mod input;
pub mod ipc;
pub mod launcher;
pub mod limits;
pub mod lock;
pub mod notify;
pub mod reload;
pub mod render;
pub mod sanitize;
pub mod selections;
pub mod session;
pub mod shell;
pub mod sleep;
pub mod state;
pub mod text;
pub mod visible;
pub mod vms;
pub mod xwayland;

use std::path::PathBuf;

use anyhow::Context;
use bulkhead_config::Config;
use smithay::reexports::calloop::EventLoop;
use smithay::reexports::wayland_server::Display;

use crate::backend::{Backend, BackendKind};
use crate::state::{Desktop, State};

/// How to start the compositor.
pub struct RunOptions {
    pub config: Config,
    /// Why the config file could not be used (the session then runs on the defaults).
    pub config_error: Option<String>,
    pub backend: BackendKind,
    /// Program run on the host socket once the compositor is up (tests, demos).
    pub startup_command: Option<String>,
}

/// How long the notice of a config that could not be used stays on screen.
const CONFIG_ERROR_SHOWN: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the compositor until it is asked to quit.
pub fn run(opts: RunOptions) -> anyhow::Result<()> {
    let mut event_loop: EventLoop<'static, State> =
        EventLoop::try_new().context("cannot create the event loop")?;
    // The session ends on SIGTERM/SIGINT/SIGHUP (logout) as on the quit action: VMs are
    // stopped gracefully below. The signals are blocked here, before any thread exists, so
    // every later thread inherits the mask and none of them can be killed by one instead.
    let signals = smithay::reexports::calloop::signals::Signals::new(&[
        smithay::reexports::calloop::signals::Signal::SIGTERM,
        smithay::reexports::calloop::signals::Signal::SIGINT,
        smithay::reexports::calloop::signals::Signal::SIGHUP,
    ])
    .context("cannot handle signals")?;
    let stop = event_loop.get_signal();
    event_loop
        .handle()
        .insert_source(signals, move |event, _, _| {
            tracing::info!("{:?}: ending the session", event.signal());
            stop.stop();
        })
        .map_err(|e| anyhow::anyhow!("cannot handle signals: {e}"))?;
    match crate::accept::raise_fd_limit() {
        Ok(n) => tracing::info!("open files limit: {n}"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    let display: Display<State> = Display::new().context("cannot create the Wayland display")?;
    let kind = opts.backend.resolve();
    let headless_cfg = opts.config.headless.clone();
    let mut desk = Desktop::new(
        opts.config,
        display,
        event_loop.handle(),
        event_loop.get_signal(),
        "seat0",
    )?;
    // Our own WAYLAND_DISPLAY is never put in the environment: the nested backend would connect
    // to itself, and every program Bulkhead starts gets the host socket explicitly (spawn).
    let backend = match kind {
        BackendKind::Headless => {
            Backend::Headless(backend::headless::Headless::new(&mut desk, &headless_cfg)?)
        }
        BackendKind::Winit => Backend::Winit(Box::new(backend::winit::Winit::new(&mut desk)?)),
        BackendKind::Drm => Backend::Drm(Box::new(backend::drm::Drm::new(&mut desk)?)),
        BackendKind::Auto => unreachable!("resolved above"),
    };
    if let Err(e) = reload::watch(&mut desk) {
        tracing::warn!(
            "{e}; the config is not reloaded on change (action reload-config still works)"
        );
    }
    let ipc_path = bulkhead_ipc::socket_path(&desk.runtime_dir);
    let ipc = ipc::IpcServer::start(&ipc_path, &desk.loop_handle).map_err(anyhow::Error::msg)?;
    let vms = vms::start(&desk).map_err(anyhow::Error::msg)?;
    let mut state = State {
        backend,
        desk,
        ipc: Some(ipc),
        vms: Some(vms.clone()),
    };

    print_ready(&state, &ipc_path);
    // VM apps for host launchers (fuzzel and the like) too.
    match desktop_dir() {
        Some(dir) => match launcher::write_desktop_files(&state.desk.config, &dir) {
            Ok(files) if !files.is_empty() => {
                tracing::info!("wrote {} app entries into {}", files.len(), dir.display())
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot write app entries into {}: {e}", dir.display()),
        },
        None => tracing::warn!("neither XDG_DATA_HOME nor HOME is set: no app entries written"),
    }
    if kind == BackendKind::Drm {
        // The real session locks before the machine sleeps (logind's sleep inhibitor).
        let watched =
            event_loop
                .handle()
                .insert_source(sleep::watch(), |event, _, state: &mut State| {
                    if let smithay::reexports::calloop::channel::Event::Msg(e) = event {
                        state.on_sleep_event(e);
                    }
                });
        if let Err(e) = watched {
            tracing::warn!("no lock before sleep: {e}");
        }
    }
    vms.autostart();
    state.start_xwayland();
    state.start_session();
    if let Some(e) = opts.config_error {
        let text = format!("Config not used, defaults instead: {e}");
        let color = state.desk.domain_color(&crate::domain::Domain::Host);
        state.desk.notifications.push_lasting(
            crate::sanitize::sanitize_title(&text),
            color,
            CONFIG_ERROR_SHOWN,
        );
        state.desk.request_redraw();
    }
    if let Some(cmd) = opts.startup_command {
        state
            .run_action(&bulkhead_config::Action::Spawn(cmd))
            .map_err(anyhow::Error::msg)?;
    }

    event_loop
        .run(None, &mut state, |state| {
            state.refresh_pointer_focus();
            state.desk.space.refresh();
            state.desk.popups.cleanup();
            // The DRM backend draws on demand (and on page flips), not on a clock.
            if state.desk.dirty && state.backend.renders_on_demand() {
                state.render();
            }
            if let Err(e) = state.desk.display_handle.flush_clients() {
                tracing::warn!("flushing clients failed: {e}");
            }
        })
        .context("the event loop failed")?;
    tracing::info!("stopping VMs");
    vms.stop_all();
    tracing::info!("Bulkhead exits");
    Ok(())
}

fn print_ready(state: &State, ipc_path: &std::path::Path) {
    let desk = &state.desk;
    let host: PathBuf = desk.runtime_dir.join(&desk.host_socket);
    println!("bulkhead: host socket {}", host.display());
    for vm in &desk.vms {
        println!(
            "bulkhead: VM {} socket {}",
            vm.domain.name(),
            vm.socket.path.display()
        );
    }
    println!("bulkhead: IPC socket {}", ipc_path.display());
}
pub use smithay::reexports as smithay_reexports;
pub use smithay::utils::{Logical, Point};

/// `$XDG_DATA_HOME/applications` (`~/.local/share/applications`).
pub(crate) fn desktop_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".local/share")))
        .map(|d| d.join("applications"))
}
