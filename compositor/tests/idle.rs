//! A VM can't keep the host awake or unlocked against the user's settings (threat model,
//! promise 5): a raw-wire VM client holds an idle inhibitor on surfaces nobody sees, on a VM
//! that may not inhibit, and while the screen locks; swayidle on the host says whether the
//! session still goes idle.

mod common;

use std::path::Path;
use std::time::Instant;

use common::client::{Client, WHITE};
use common::*;
use wayland_client::globals::registry_queue_init;
use wayland_protocols::wp::idle_inhibit::zv1::client::{
    zwp_idle_inhibit_manager_v1::ZwpIdleInhibitManagerV1, zwp_idle_inhibitor_v1::ZwpIdleInhibitorV1,
};

/// An idle inhibitor of `cl` on `surface`.
fn inhibit(
    cl: &mut Client,
    surface: &wayland_client::protocol::wl_surface::WlSurface,
) -> ZwpIdleInhibitorV1 {
    let (globals, _queue) =
        registry_queue_init::<common::client::Events>(&cl.conn).expect("registry");
    let manager: ZwpIdleInhibitManagerV1 = globals
        .bind(&cl.qh, 1..=1, ())
        .expect("a VM client is offered idle-inhibit");
    let inhibitor = manager.create_inhibitor(surface, &cl.qh, ());
    cl.roundtrip();
    inhibitor
}

/// A shown window "video" of a raw `work` client, holding an idle inhibitor.
fn inhibiting_window(c: &Compositor) -> (Client, ZwpIdleInhibitorV1, u64) {
    let mut work = Client::connect(&c.vm_socket("work"));
    let t = work.toplevel("video");
    work.map(&t, 320, 200, WHITE);
    let id = c.wait_window("work", "video").id;
    let inhibitor = inhibit(&mut work, &t.surface);
    (work, inhibitor, id)
}

/// swayidle on the host with a 1 s timeout that touches `file`.
fn swayidle(c: &Compositor, file: &Path) -> ChildGuard {
    c.spawn(
        "host",
        "swayidle",
        &["-w", "timeout", "1", &format!("touch {}", file.display())],
    )
}

fn wait_for(what: &str, file: &Path) {
    let deadline = Instant::now() + TIMEOUT;
    while !file.exists() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_vm_inhibitor_on_a_surface_nobody_sees_does_not_keep_the_host_awake() {
    let c = Compositor::start(TWO_VMS);
    let mut work = Client::connect(&c.vm_socket("work"));
    // A surface that never becomes a window.
    let hidden = work.surface();
    let _i = inhibit(&mut work, &hidden);
    let idle = c.dir.path().join("idle");
    let _swayidle = swayidle(&c, &idle);
    wait_for("an invisible VM surface kept the session awake", &idle);
}

#[test]
fn a_minimised_vm_window_does_not_keep_the_host_awake() {
    let c = Compositor::start(TWO_VMS);
    let (_work, _i, id) = inhibiting_window(&c);
    c.focus(id);
    c.action("minimize", None);
    c.wait_windows("the window minimised", |ws| {
        ws.iter().any(|x| x.id == id && x.minimized)
    });
    let idle = c.dir.path().join("idle");
    let _swayidle = swayidle(&c, &idle);
    wait_for("a minimised VM window kept the session awake", &idle);
}

#[test]
fn a_vm_that_may_not_inhibit_idle_does_not_keep_the_host_awake() {
    let config = TWO_VMS.replace(
        "name = \"work\"\ncolor = \"#3060ff\"",
        "name = \"work\"\ncolor = \"#3060ff\"\nidle-inhibit = false",
    );
    assert!(config.contains("idle-inhibit = false"));
    let c = Compositor::start(&config);
    let (_work, _i, _) = inhibiting_window(&c);
    let idle = c.dir.path().join("idle");
    let _swayidle = swayidle(&c, &idle);
    wait_for(
        "a VM with idle-inhibit = false kept the session awake",
        &idle,
    );
}

#[test]
fn a_visible_vm_inhibitor_never_delays_the_lock_nor_keeps_a_locked_screen_awake() {
    let c = Compositor::start(TWO_VMS);
    let (_work, _i, _) = inhibiting_window(&c);
    // An explicit lock with the inhibitor active: it locks.
    let _lock = c.spawn("host", "swaylock", &["--color", "00ff00"]);
    let deadline = Instant::now() + TIMEOUT;
    while c.screenshot("idle-locked").pixel(10, 10) != [0x00, 0xff, 0x00] {
        assert!(Instant::now() < deadline, "the lock never showed");
    }
    // Locked, the VM's inhibitor counts no more: the idle timeout fires (screens may blank).
    let idle = c.dir.path().join("idle");
    let _swayidle = swayidle(&c, &idle);
    wait_for("a VM's inhibitor kept a locked session awake", &idle);
}
