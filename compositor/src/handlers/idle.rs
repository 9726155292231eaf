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

use crate::domain::is_privileged;
use crate::state::State;

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

    /// Idle-inhibiting surfaces came or went.
    pub fn update_idle_inhibit(&mut self) {
        self.desk.idle_inhibitors.retain(|s| {
            use smithay::reexports::wayland_server::Resource;
            s.is_alive()
        });
        let inhibited = !self.desk.idle_inhibitors.is_empty();
        self.desk.idle_notifier_state.set_is_inhibited(inhibited);
    }
}
