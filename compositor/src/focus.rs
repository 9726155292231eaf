//! Input and focus belong to the user (threat model, promise 1).
//!
//! - **Serials.** Every button press, touch down and key press the compositor forwards is
//!   recorded for the client that received it ([`InputSerials`]); a VM client's popup grab,
//!   interactive move or resize and activation token are honoured only with its latest one (or
//!   the keyboard enter it was sent), and only while its domain holds the keyboard.
//! - **Grabs end** on every compositor binding, on the lock, and on a click on another
//!   client's surface ([`State::end_grabs`]).
//! - **New windows** take the keyboard only when their domain already holds it, or with a
//!   launch grant ([`LaunchGrants`]); otherwise they open behind the focused window, wanting
//!   attention.

use std::time::{Duration, Instant};

use smithay::desktop::{PopupKind, PopupUngrabStrategy, Window};
use smithay::reexports::wayland_server::backend::ClientId;
use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;
use smithay::reexports::wayland_server::{Client, Resource};
use smithay::utils::{IsAlive, Serial, SERIAL_COUNTER};
use smithay::wayland::seat::WaylandFocus;

use crate::domain::{client_domain, ClientState, Domain, SerialUse};
use crate::shell::{meta, title_and_app_id};
use crate::state::{Desktop, State};

/// How long a launch may take to show its first window and still get the keyboard by default
/// (apps take up to 100 s to start under software emulation).
pub const DEFAULT_LAUNCH_FOCUS: Duration = Duration::from_secs(120);

/// One grant per launch (launcher, `vm-run`, IPC): the first toplevel its domain maps within
/// the time allowed takes keyboard focus. Any user action elsewhere voids them all.
#[derive(Default, Debug)]
pub struct LaunchGrants(Vec<(Domain, Instant)>);

impl LaunchGrants {
    pub fn grant(&mut self, domain: Domain, now: Instant) {
        self.0.push((domain, now));
    }

    /// Uses one live grant of `domain`, if there is one.
    pub fn take(&mut self, domain: &Domain, now: Instant, lifetime: Duration) -> bool {
        self.0
            .retain(|(_, at)| now.saturating_duration_since(*at) <= lifetime);
        match self.0.iter().position(|(d, _)| d == domain) {
            Some(i) => {
                self.0.remove(i);
                true
            }
            None => false,
        }
    }

    /// The user clicked, typed into another domain or switched windows.
    pub fn void(&mut self) {
        self.0.clear();
    }
}

impl Desktop {
    /// The domain of the client holding the keyboard (a window, one of its popups, a layer
    /// surface or a lock surface).
    pub fn focused_domain(&self) -> Option<Domain> {
        let focus = self.keyboard_focus.as_ref()?;
        let client = self.display_handle.get_client(focus.id()).ok()?;
        Some(client_domain(&client))
    }

    /// The window the keyboard is in, through any of its popups.
    pub fn focused_root_window(&self) -> Option<Window> {
        let focus = self.keyboard_focus.as_ref()?;
        let w = self.window_for_any_surface(focus)?;
        self.space.elements().any(|e| e == &w).then_some(w)
    }

    /// How long a launch grant lasts.
    pub fn launch_focus(&self) -> Duration {
        self.config
            .session
            .launch_focus
            .map_or(DEFAULT_LAUNCH_FOCUS, |d| Duration::from_secs(d.0))
    }
}

/// Marks an activation token the compositor minted for a launch into `0` (no client made
/// it): it is worth the launch's grant, no more, and dies with it.
pub struct LaunchToken(pub Domain);

impl State {
    /// A launch in the VM named `vm` (launcher, vm-run): its first window may take focus.
    /// Returns the environment that carries the launch's activation token to the app
    /// (`XDG_ACTIVATION_TOKEN`, and `DESKTOP_STARTUP_ID` for toolkits that read that): an app
    /// that activates a window with it spends the launch's grant on that window.
    pub fn grant_launch(&mut self, vm: &str) -> Vec<(String, String)> {
        let Some(domain) = self
            .desk
            .vms
            .iter()
            .find(|v| v.domain.name() == vm)
            .map(|v| v.domain.clone())
        else {
            return Vec::new();
        };
        let now = Instant::now();
        self.desk.launch_grants.grant(domain.clone(), now);
        // Launch tokens nobody used are dropped once their grant would have run out.
        let lifetime = self.desk.launch_focus();
        self.desk.xdg_activation_state.retain_tokens(|_, data| {
            data.user_data.get::<LaunchToken>().is_none()
                || now.saturating_duration_since(data.timestamp) <= lifetime
        });
        let data = smithay::wayland::xdg_activation::XdgActivationTokenData::default();
        data.user_data
            .insert_if_missing_threadsafe(|| LaunchToken(domain));
        let (token, _) = self.desk.xdg_activation_state.create_external_token(data);
        let token = token.as_str().to_string();
        vec![
            ("XDG_ACTIVATION_TOKEN".into(), token.clone()),
            ("DESKTOP_STARTUP_ID".into(), token),
        ]
    }

    /// Records the serial of user input just forwarded to `surface`'s client.
    pub fn record_input_serial(
        &self,
        surface: Option<&WlSurface>,
        serial: Serial,
        kind: SerialUse,
    ) {
        let Some(client) = surface.and_then(|s| self.desk.display_handle.get_client(s.id()).ok())
        else {
            return;
        };
        if let Some(data) = client.get_data::<ClientState>() {
            match kind {
                SerialUse::Press => data.serials.record_press(serial.into()),
                SerialUse::Input => data.serials.record_key(serial.into()),
            }
        }
    }

    /// Whether `client` may cite `serial` for a grab, a move/resize or a token: its latest
    /// input (or keyboard enter), while its domain holds the keyboard and the session is
    /// unlocked.
    pub fn serial_allows(&self, client: &Client, serial: Serial, kind: SerialUse) -> bool {
        self.serial_allows_id(&client.id(), serial, kind)
    }

    /// [`State::serial_allows`] for a client known by its id.
    pub fn serial_allows_id(&self, client: &ClientId, serial: Serial, kind: SerialUse) -> bool {
        if self.desk.lock.is_locked() || self.desk.launcher.is_some() {
            return false;
        }
        let dh = &self.desk.display_handle;
        let Ok(any) = dh.backend_handle().get_client_data(client.clone()) else {
            return false;
        };
        let Some(data) = any.downcast_ref::<ClientState>() else {
            return false;
        };
        if self.desk.focused_domain().as_ref() != Some(&data.domain) {
            return false;
        }
        let holds_keyboard = self
            .desk
            .keyboard_focus
            .as_ref()
            .and_then(|s| dh.get_client(s.id()).ok())
            .is_some_and(|c| c.id() == *client);
        let enter = self
            .desk
            .keyboard()
            .and_then(|k| k.last_enter())
            .filter(|_| holds_keyboard)
            .map(u32::from);
        data.serials.allows(serial.into(), kind, enter)
    }

    /// A popup grab from a VM client: honoured only with its latest input serial, while its
    /// domain holds the keyboard, for a popup whose parent is mapped and focused (the window
    /// itself, or the popup that already holds the grab).
    pub fn vm_popup_grab_allowed(
        &self,
        popup: &PopupKind,
        client: &Client,
        serial: Serial,
    ) -> bool {
        let Some(parent) = (match popup {
            PopupKind::Xdg(p) => p.get_parent_surface(),
            PopupKind::InputMethod(_) => None,
        }) else {
            return false;
        };
        let Some(focus) = self.desk.keyboard_focus.as_ref() else {
            return false;
        };
        let Some(window) = self.desk.window_for_any_surface(&parent) else {
            return false;
        };
        let parent_focused = self.desk.focused_root_window().as_ref() == Some(&window)
            && window
                .wl_surface()
                .is_some_and(|root| *root == parent || *focus == parent);
        if !parent_focused {
            return false;
        }
        // A nested menu of a grab already honoured (submenus open on hover, with the serial
        // of the click that opened the first menu).
        let nested = *focus == parent
            && self
                .desk
                .popup_grab
                .as_ref()
                .is_some_and(|g| !g.has_ended())
            && focus.id().same_client_as(&popup.wl_surface().id());
        nested || self.serial_allows(client, serial, SerialUse::Input)
    }

    /// Ends every grab a client holds: popups are dismissed (popup_done), the keyboard and
    /// pointer grabs unset, and the keyboard goes back to the grabbing window (the caller may
    /// move it on). Bindings, the lock and clicks elsewhere call this.
    pub fn end_grabs(&mut self) {
        // A pointer lock or confinement is a grab too (`handlers::pointer_constraints`).
        self.release_pointer_constraint();
        let serial = SERIAL_COUNTER.next_serial();
        let time = self.desk.elapsed().as_millis() as u32;
        let root = self
            .desk
            .popup_grab
            .take()
            .filter(|g| !g.has_ended())
            .and_then(|mut g| g.ungrab(PopupUngrabStrategy::All));
        if let Some(kb) = self.desk.keyboard() {
            if kb.is_grabbed() {
                // Unset first: a popup keyboard grab would otherwise keep the focus.
                kb.unset_grab(self);
            }
            let locked = self.desk.lock.is_locked();
            if let Some(root) = root.filter(|r| r.alive() && !locked) {
                kb.set_focus(self, Some(root), serial);
            }
        }
        if let Some(pointer) = self.desk.seat.get_pointer() {
            if pointer.is_grabbed() {
                pointer.unset_grab(self, serial, time);
            }
        }
    }

    /// Ends the grabs when the user acts on `surface` of another client than the grabbing
    /// one (a click, a touch).
    pub fn end_grabs_of_others(&mut self, surface: &WlSurface) {
        let grabber = self
            .desk
            .popup_grab
            .as_ref()
            .filter(|g| !g.has_ended())
            .and_then(|g| g.current_grab());
        match grabber {
            Some(g) if !g.id().same_client_as(&surface.id()) => self.end_grabs(),
            Some(_) => {}
            None => self.desk.popup_grab = None,
        }
    }

    /// Whether a new toplevel of `domain` takes the keyboard: the host's do, a VM's only when
    /// its domain holds the keyboard already, or with a launch grant, or when nothing has the
    /// keyboard at all (there is no one to take it from).
    pub fn new_window_takes_focus(&mut self, domain: &Domain) -> bool {
        if domain.is_host() {
            return true;
        }
        if matches!(domain, Domain::Unknown(_)) {
            return false;
        }
        let focused = self.desk.focused_domain();
        let lifetime = self.desk.launch_focus();
        if self
            .desk
            .launch_grants
            .take(domain, Instant::now(), lifetime)
        {
            return true;
        }
        match focused {
            Some(d) => &d == domain,
            None => self.desk.focused_root_window().is_none() && !self.desk.lock.is_locked(),
        }
    }

    /// Shows a new window without focus: behind the focused window, its title bar in the
    /// attention style, first in Alt-Tab, and a notification naming its domain.
    pub fn open_unfocused(
        &mut self,
        window: &Window,
        loc: smithay::utils::Point<i32, smithay::utils::Logical>,
    ) {
        let focused = self.desk.focused_root_window();
        self.desk.space.map_element(window.clone(), loc, false);
        if let Some(f) = &focused {
            self.desk.space.raise_element(f, false);
        }
        let m = meta(window);
        m.state.borrow_mut().attention = true;
        self.desk.focus_order.retain(|w| w != window);
        let at = 1.min(self.desk.focus_order.len());
        self.desk.focus_order.insert(at, window.clone());
        let (title, _) = title_and_app_id(window);
        let domain = m.domain.clone();
        let name = domain.name().to_string();
        // One notice per domain however many windows it opens: a VM cannot flood the others
        // off the screen.
        let color = self.desk.domain_color(&domain);
        self.desk.notifications.push_counted(
            (!domain.is_host()).then_some(name.as_str()),
            format!("attention:{name}"),
            color,
            |n| match n {
                1 => format!("[{name}] {title} wants attention"),
                n => format!("[{name}] {n} windows want attention"),
            },
        );
        self.desk.request_redraw();
        tracing::info!(domain = domain.name(), "a new window opened without focus");
    }
}
