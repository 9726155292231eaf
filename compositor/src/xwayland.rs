//! Xwayland for host X11 applications.
//!
//! One Xwayland server per session, started with the session when `Xwayland` is installed
//! (`[session] xwayland = false` turns it off). It is a client of the host domain: its windows
//! get the neutral host frame like any host window, and it sees no privileged global (it needs
//! none). Managed X11 windows become ordinary desktop windows (placed, framed, focused, moved
//! and closed by the compositor); override-redirect windows (menus, tooltips) are shown where
//! X puts them, above the managed windows, without a frame.

use std::os::unix::net::UnixStream;

use smithay::desktop::Window;
use smithay::reexports::calloop::LoopHandle;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::Client;
use smithay::utils::{Logical, Rectangle};
use smithay::wayland::xwayland_shell::{XWaylandShellHandler, XWaylandShellState};
use smithay::xwayland::xwm::{Reorder, ResizeEdge, XwmId};
use smithay::xwayland::{X11Surface, X11Wm, XWayland, XWaylandEvent, XwmHandler};

use crate::domain::Domain;
use crate::frame;
use crate::state::State;

/// The session's Xwayland, once started.
pub struct Xwayland {
    pub shell: XWaylandShellState,
    pub wm: Option<X11Wm>,
    /// The X display number (`DISPLAY=:N`) once the server is ready.
    pub display: Option<u32>,
    /// Override-redirect windows currently mapped, bottom to top.
    pub overrides: Vec<X11Surface>,
}

impl Xwayland {
    pub fn new(shell: XWaylandShellState) -> Xwayland {
        Xwayland {
            shell,
            wm: None,
            display: None,
            overrides: Vec::new(),
        }
    }
}

/// The oldest Xwayland whose windows smithay can show: 23.1 brought xwayland-shell-v1, the
/// only way smithay 0.7 pairs an X11 window with its wl_surface (22.x only sends the
/// deprecated WL_SURFACE_ID, which smithay records but never pairs).
pub const MIN_VERSION: (u32, u32) = (23, 1);

/// Major and minor from `Xwayland -version` ("... Xwayland Version 22.1.9 (12201009)").
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let rest = text.split("Xwayland Version ").nth(1)?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The installed Xwayland's version, when it says one.
fn installed_version() -> Option<(u32, u32)> {
    let out = std::process::Command::new("Xwayland")
        .arg("-version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    parse_version(&text)
}

/// Whether an `Xwayland` executable is on PATH.
pub fn installed() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|d| {
            std::fs::metadata(d.join("Xwayland")).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    })
}

impl State {
    /// Starts Xwayland unless the config turns it off; without the binary the session runs
    /// without X11 (said once in the log).
    pub fn start_xwayland(&mut self) {
        let wanted = self.desk.config.session.xwayland;
        if wanted == Some(false) {
            return;
        }
        if !installed() {
            if wanted == Some(true) {
                let text =
                    "Xwayland is not installed: X11 apps cannot run (install the xwayland package)";
                tracing::warn!("{text}");
                self.desk.notify(&Domain::Host, text.into());
            } else {
                tracing::info!("Xwayland is not installed: no X11 apps");
            }
            return;
        }
        match installed_version() {
            Some(v) if v >= MIN_VERSION => {}
            found => {
                let found = found.map_or("of unknown version".to_string(), |(a, b)| {
                    format!("{a}.{b}")
                });
                let text = format!(
                    "Xwayland {found} is too old for X11 windows (needs {}.{} or newer, with xwayland-shell-v1)",
                    MIN_VERSION.0, MIN_VERSION.1
                );
                tracing::warn!("{text}");
                if wanted == Some(true) {
                    self.desk.notify(&Domain::Host, text);
                }
                return;
            }
        }
        let result = XWayland::spawn(
            &self.desk.display_handle,
            None,
            std::iter::empty::<(String, String)>(),
            true,
            std::process::Stdio::null(),
            std::process::Stdio::null(),
            |_| {},
        );
        let (xwayland, client) = match result {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("cannot start Xwayland: {e}; X11 apps cannot run");
                return;
            }
        };
        let handle: LoopHandle<'static, State> = self.desk.loop_handle.clone();
        let inserted = self
            .desk
            .loop_handle
            .insert_source(xwayland, move |event, _, state| match event {
                XWaylandEvent::Ready {
                    x11_socket,
                    display_number,
                } => state.xwayland_ready(&handle, x11_socket, client.clone(), display_number),
                XWaylandEvent::Error => {
                    tracing::warn!("Xwayland exited while starting; X11 apps cannot run");
                }
            });
        if let Err(e) = inserted {
            tracing::warn!("cannot watch Xwayland: {e}");
        }
    }

    fn xwayland_ready(
        &mut self,
        handle: &LoopHandle<'static, State>,
        socket: UnixStream,
        client: Client,
        number: u32,
    ) {
        match X11Wm::start_wm(handle.clone(), socket, client) {
            Ok(wm) => {
                tracing::info!("Xwayland ready on DISPLAY=:{number}");
                self.desk.xwayland.wm = Some(wm);
                self.desk.xwayland.display = Some(number);
                // Programs started by systemd or D-Bus from now on find the X display too.
                self.export_environment();
            }
            Err(e) => tracing::warn!("cannot start the X11 window manager: {e}"),
        }
    }

    /// Removes the managed window of `surface` wherever it is (mapped, pending, minimised).
    fn forget_x11(&mut self, surface: &X11Surface) {
        self.desk.xwayland.overrides.retain(|s| s != surface);
        let is_it = |w: &Window| w.x11_surface() == Some(surface);
        self.remove_window_where(is_it);
    }
}

/// Tells an X11 window where the compositor put it (X clients place their menus from it).
pub fn sync_position(desk: &crate::state::Desktop, window: &Window) {
    let Some(x11) = window.x11_surface() else {
        return;
    };
    let Some(loc) = desk.space.element_location(window) else {
        return;
    };
    let size = x11.geometry().size;
    if let Err(e) = x11.configure(Rectangle::new(loc, size)) {
        tracing::debug!("cannot configure an X11 window: {e}");
    }
}

impl XWaylandShellHandler for State {
    fn xwayland_shell_state(&mut self) -> &mut XWaylandShellState {
        &mut self.desk.xwayland.shell
    }

    fn surface_associated(&mut self, _xwm: XwmId, surface: WlSurface, _window: X11Surface) {
        // The association may come after the surface's last commit (X tells it late): the
        // window is shown now if its buffer is already there.
        tracing::debug!(
            pending = self.desk.pending_windows.len(),
            "X11 surface associated"
        );
        self.map_if_ready(&surface);
    }
}

impl XwmHandler for State {
    fn xwm_state(&mut self, _xwm: XwmId) -> &mut X11Wm {
        // Only the window manager calls this, and it exists from the moment it started.
        self.desk
            .xwayland
            .wm
            .as_mut()
            .unwrap_or_else(|| unreachable!("X11 event without a window manager"))
    }

    fn new_window(&mut self, _xwm: XwmId, _window: X11Surface) {}

    fn new_override_redirect_window(&mut self, _xwm: XwmId, _window: X11Surface) {}

    fn map_window_request(&mut self, _xwm: XwmId, surface: X11Surface) {
        tracing::debug!(title = surface.title(), "X11 map request");
        if let Err(e) = surface.set_mapped(true) {
            tracing::debug!("cannot map an X11 window: {e}");
            return;
        }
        if self
            .desk
            .all_windows()
            .iter()
            .chain(self.desk.pending_windows.iter())
            .any(|w| w.x11_surface() == Some(&surface))
        {
            return;
        }
        // Shown when its surface has a buffer, as any toplevel (`map_if_ready`).
        let window = Window::new_x11_window(surface);
        self.desk.add_window(window, Domain::Host);
    }

    fn mapped_override_redirect_window(&mut self, _xwm: XwmId, surface: X11Surface) {
        self.desk.xwayland.overrides.retain(|s| s != &surface);
        self.desk.xwayland.overrides.push(surface);
        self.desk.request_redraw();
    }

    fn unmapped_window(&mut self, _xwm: XwmId, surface: X11Surface) {
        self.forget_x11(&surface);
        if !surface.is_override_redirect() {
            if let Err(e) = surface.set_mapped(false) {
                tracing::debug!("cannot unmap an X11 window: {e}");
            }
        }
    }

    fn destroyed_window(&mut self, _xwm: XwmId, surface: X11Surface) {
        self.forget_x11(&surface);
    }

    fn configure_request(
        &mut self,
        _xwm: XwmId,
        surface: X11Surface,
        x: Option<i32>,
        y: Option<i32>,
        w: Option<u32>,
        h: Option<u32>,
        _reorder: Option<Reorder>,
    ) {
        // The size is the app's to ask for (clamped); where a managed window sits is the
        // compositor's decision once it is shown.
        let mut geo = surface.geometry();
        let shown = self
            .desk
            .space
            .elements()
            .find(|win| win.x11_surface() == Some(&surface))
            .cloned();
        if shown.is_none() {
            geo.loc.x = x.unwrap_or(geo.loc.x);
            geo.loc.y = y.unwrap_or(geo.loc.y);
        }
        let clamp = |v: Option<u32>, cur: i32| v.map_or(cur, |v| v.min(i32::MAX as u32) as i32);
        geo.size = frame::clamp_size((clamp(w, geo.size.w), clamp(h, geo.size.h)).into());
        if let Err(e) = surface.configure(geo) {
            tracing::debug!("cannot configure an X11 window: {e}");
        }
        if let Some(window) = shown {
            sync_position(&self.desk, &window);
        }
        self.desk.request_redraw();
    }

    fn configure_notify(
        &mut self,
        _xwm: XwmId,
        _surface: X11Surface,
        _geometry: Rectangle<i32, Logical>,
        _above: Option<u32>,
    ) {
        // Override-redirect windows are drawn at their current X geometry; managed ones where
        // the compositor put them.
        self.desk.request_redraw();
    }

    fn resize_request(&mut self, _: XwmId, _: X11Surface, _: u32, _: ResizeEdge) {
        // Resizing goes through the compositor's frame edges (or Super+right-drag).
    }

    fn move_request(&mut self, _: XwmId, _: X11Surface, _: u32) {
        // Moving goes through the compositor's title bar (or Super+drag).
    }
}

smithay::delegate_xwayland_shell!(State);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_xwayland_output() {
        let bookworm =
            "The X.Org Foundation Xwayland Version 22.1.9 (12201009)\nX Protocol Version 11";
        assert_eq!(parse_version(bookworm), Some((22, 1)));
        assert!(parse_version(bookworm).is_some_and(|v| v < MIN_VERSION));
        let trixie = "The X.Org Foundation Xwayland Version 24.1.6 (12401006)";
        assert!(parse_version(trixie).is_some_and(|v| v >= MIN_VERSION));
        assert_eq!(parse_version("Xwayland Version 23.1.0"), Some((23, 1)));
        assert_eq!(parse_version("garbage"), None);
        assert_eq!(parse_version("Xwayland Version x.y"), None);
    }
}
