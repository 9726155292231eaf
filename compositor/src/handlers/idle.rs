//! ext-idle-notify for host tools (swayidle): they are told when the user stopped and started
//! using the seat. VM clients never see the global: when the user is away is nothing a VM
//! should learn. Surfaces that inhibit idling (idle-inhibit) hold it off.

use smithay::reexports::wayland_protocols::ext::idle_notify::v1::server::{
    ext_idle_notification_v1::ExtIdleNotificationV1, ext_idle_notifier_v1::ExtIdleNotifierV1,
};
use smithay::reexports::wayland_server::{
    delegate_dispatch, Client, DataInit, DisplayHandle, GlobalDispatch, New,
};
use smithay::wayland::idle_notify::{
    IdleNotificationUserData, IdleNotifierHandler, IdleNotifierState,
};

use smithay::reexports::wayland_server::protocol::wl_surface::WlSurface;

use crate::domain::{is_privileged, Domain};
use crate::state::{Desktop, State};

impl IdleNotifierHandler for State {
    fn idle_notifier_state(&mut self) -> &mut IdleNotifierState<Self> {
        &mut self.desk.idle_notifier_state
    }
}

impl GlobalDispatch<ExtIdleNotifierV1, ()> for State {
    fn bind(
        state: &mut State,
        dh: &DisplayHandle,
        client: &Client,
        resource: New<ExtIdleNotifierV1>,
        data: &(),
        init: &mut DataInit<'_, State>,
    ) {
        <IdleNotifierState<State> as GlobalDispatch<ExtIdleNotifierV1, (), State>>::bind(
            state, dh, client, resource, data, init,
        )
    }

    fn can_view(client: Client, _: &()) -> bool {
        is_privileged(&client)
    }
}

delegate_dispatch!(State: [ExtIdleNotifierV1: ()] => IdleNotifierState<State>);
delegate_dispatch!(State: [ExtIdleNotificationV1: IdleNotificationUserData] => IdleNotifierState<State>);

impl State {
    /// Any input: the user is here.
    pub fn user_activity(&mut self) {
        let seat = self.desk.seat.clone();
        self.desk.idle_notifier_state.notify_activity(&seat);
        self.desk.last_activity = std::time::Instant::now();
        self.desk.idle_locked = false;
    }

    /// Idle-inhibiting surfaces came or went, or what is shown changed (a window mapped,
    /// minimised or closed, the session locked): tells idle watchers (swayidle).
    pub fn update_idle_inhibit(&mut self) {
        self.desk.idle_inhibitors.retain(|s| {
            use smithay::reexports::wayland_server::Resource;
            s.is_alive()
        });
        let inhibited = self.desk.idle_inhibited();
        self.desk.idle_notifier_state.set_is_inhibited(inhibited);
    }
}

impl Desktop {
    /// Whether an idle inhibitor holds off idling now. Never while locked (so it can never
    /// delay a lock or keep a locked screen on). A host surface's counts while it lives; a
    /// VM's only while its window is mapped, not minimised and on an output, and its VM
    /// allows it (`idle-inhibit`); an unknown client's never.
    pub fn idle_inhibited(&self) -> bool {
        if self.lock.is_locked() {
            return false;
        }
        self.idle_inhibitors.iter().any(|s| {
            use smithay::reexports::wayland_server::Resource;
            if !s.is_alive() {
                return false;
            }
            match self.surface_domain(s) {
                Domain::Host => true,
                Domain::Unknown(_) => false,
                Domain::Vm(name) => {
                    let allowed = self
                        .config
                        .vms
                        .iter()
                        .find(|v| v.name == *name)
                        .is_some_and(|v| v.spec.idle_inhibit);
                    allowed && self.shown_on_an_output(s)
                }
            }
        })
    }

    /// Whether `surface` belongs to a mapped, unminimised window that lies on an output.
    fn shown_on_an_output(&self, surface: &WlSurface) -> bool {
        let Some(window) = self.window_for_any_surface(surface) else {
            return false;
        };
        let Some(geo) = self.space.element_geometry(&window) else {
            // Pending or minimised: not in the space.
            return false;
        };
        self.output_rects().iter().any(|o| o.overlaps(geo))
    }
}
