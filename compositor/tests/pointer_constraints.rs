//! Pointer lock and confinement belong to the user (threat model, promise 1): a VM app's
//! zwp_pointer_constraints_v1 lock or confinement holds only in the window that has the
//! keyboard, the escape binding (Super+Escape) and every other binding take it back, it comes
//! back only with a click in its window, and the session lock ends it. Raw-wire clients on the
//! VM sockets; the pointer moves through the compositor's own relative-motion path.

mod common;

use bulkhead_ipc::InputEvent;
use common::client::{Client, Toplevel, WHITE};
use common::*;
use wayland_client::protocol::wl_pointer::WlPointer;
use wayland_client::protocol::wl_surface::WlSurface;
use wayland_protocols::wp::pointer_constraints::zv1::client::zwp_locked_pointer_v1::ZwpLockedPointerV1;
use wayland_protocols::wp::pointer_constraints::zv1::client::zwp_pointer_constraints_v1::{
    Lifetime, ZwpPointerConstraintsV1,
};
use wayland_protocols::wp::relative_pointer::zv1::client::zwp_relative_pointer_manager_v1::ZwpRelativePointerManagerV1;

/// A mapped window of a raw client of `domain` that listens to its keyboard, its pointer and
/// relative motion; returns the pointer too.
fn app(
    c: &Compositor,
    domain: &str,
    title: &str,
    size: (i32, i32),
) -> (Client, Toplevel, WlPointer) {
    let mut cl = Client::connect(&c.vm_socket(domain));
    let _keyboard = cl.keyboard();
    let pointer = cl.seat.get_pointer(&cl.qh, ());
    let relative: ZwpRelativePointerManagerV1 = cl.bind(1);
    let _relative = relative.get_relative_pointer(&pointer, &cl.qh, ());
    let t = cl.toplevel(title);
    cl.map(&t, size.0, size.1, WHITE);
    c.wait_window(domain, title);
    (cl, t, pointer)
}

/// `cl` asks for a persistent pointer lock on `surface`.
fn lock(cl: &mut Client, surface: &WlSurface, pointer: &WlPointer) -> ZwpLockedPointerV1 {
    let constraints: ZwpPointerConstraintsV1 = cl.bind(1);
    let lock = constraints.lock_pointer(surface, pointer, None, Lifetime::Persistent, &cl.qh, ());
    cl.roundtrip();
    lock
}

/// The user moves the mouse by `dx`, `dy` and both clients read what they were sent.
fn move_by(c: &Compositor, dx: f64, dy: f64, clients: &mut [&mut Client]) {
    c.input(vec![InputEvent::PointerMove { dx, dy }]);
    for cl in clients.iter_mut() {
        cl.roundtrip();
    }
}

/// Waits until `cl` was sent `n` constraint events (the session lock arrives from another
/// process).
fn wait_constraint_events(cl: &mut Client, n: usize, what: &str) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while cl.events.constraint.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: {:?}",
            cl.events.constraint
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
        cl.roundtrip();
    }
}

#[test]
fn a_vm_locks_the_pointer_only_in_its_focused_window_and_the_user_takes_it_back() {
    let c = Compositor::start(TWO_VMS);
    let (mut bank, _bt, _) = app(&c, "banking", "bank app", (300, 240));
    let (mut work, wt, pointer) = app(&c, "work", "game", (400, 300));
    user_clicks(&c, &mut bank, "bank app");
    // The pointer rests on the game while banking holds the keyboard.
    let game = c.wait_window("work", "game");
    let (x, y) = free_point(&c, &game);
    c.input(vec![InputEvent::PointerMotion { x, y }]);
    work.roundtrip();
    let start = *work
        .events
        .motions
        .last()
        .expect("the game saw the pointer");
    bank.roundtrip();
    let bank_seen = bank.events.motions.len();
    let _lock = lock(&mut work, &wt.surface, &pointer);
    assert!(
        work.events.constraint.is_empty(),
        "the pointer was locked in a window without the keyboard: {:?}",
        work.events.constraint
    );
    move_by(&c, 10.0, 0.0, &mut [&mut work, &mut bank]);
    assert_eq!(
        work.events.motions.last().copied(),
        Some((start.0 + 10.0, start.1)),
        "the unfocused game's lock held the pointer"
    );

    // The user focuses the game: its lock holds. The pointer stays put, the game reads only
    // relative motion.
    c.focus(game.id);
    work.roundtrip();
    assert_eq!(work.events.constraint, ["locked"]);
    let seen = work.events.motions.len();
    move_by(&c, 100.0, 50.0, &mut [&mut work, &mut bank]);
    assert_eq!(work.events.motions.len(), seen, "the locked pointer moved");
    assert_eq!(work.events.relative.last().copied(), Some((100.0, 50.0)));

    // Super+Escape takes it back, and the lock stays off while the pointer rests there.
    c.input(chord(&[KEY_LEFTMETA], KEY_ESC));
    work.roundtrip();
    assert_eq!(work.events.constraint, ["locked", "unlocked"]);
    move_by(&c, 10.0, 0.0, &mut [&mut work, &mut bank]);
    assert_eq!(
        work.events.motions.last().copied(),
        Some((start.0 + 20.0, start.1)),
        "the pointer moved while locked, or not after the escape"
    );
    assert_eq!(
        work.events.constraint.len(),
        2,
        "the lock came back by itself"
    );

    // A click in the game is the user's consent again; Alt-Tab takes the lock back.
    c.input(vec![
        InputEvent::PointerButton {
            button: 272,
            pressed: true,
        },
        InputEvent::PointerButton {
            button: 272,
            pressed: false,
        },
    ]);
    work.roundtrip();
    assert_eq!(work.events.constraint, ["locked", "unlocked", "locked"]);
    c.input(chord(&[KEY_LEFTALT], KEY_TAB));
    c.wait_windows("banking focused", |ws| {
        ws.iter().any(|w| w.title == "bank app" && w.focused)
    });
    work.roundtrip();
    assert_eq!(
        work.events.constraint,
        ["locked", "unlocked", "locked", "unlocked"]
    );
    bank.roundtrip();
    assert_eq!(
        bank.events.motions.len(),
        bank_seen,
        "the pointer reached banking's window though it rested on the game"
    );
}

#[test]
fn a_confined_pointer_stays_in_its_region_until_the_escape() {
    let c = Compositor::start(TWO_VMS);
    let (mut bank, _bt, _) = app(&c, "banking", "bank app", (300, 240));
    let (mut work, wt, pointer) = app(&c, "work", "confining", (400, 300));
    user_clicks(&c, &mut work, "confining");
    let game = c.wait_window("work", "confining");
    let bank_window = c.wait_window("banking", "bank app");
    // Into the region first: a confinement starts only inside it.
    let g = game.geometry;
    c.input(vec![InputEvent::PointerMotion {
        x: f64::from(g.x + 30),
        y: f64::from(g.y + 30),
    }]);
    work.roundtrip();
    let region = work.compositor.create_region(&work.qh, ());
    region.add(20, 20, 100, 80);
    let constraints: ZwpPointerConstraintsV1 = work.bind(1);
    let _confine = constraints.confine_pointer(
        &wt.surface,
        &pointer,
        Some(&region),
        Lifetime::Persistent,
        &work.qh,
        (),
    );
    work.roundtrip();
    assert_eq!(work.events.constraint, ["confined"]);

    // Every way out, and straight at banking's window: the pointer stays in the region.
    let b = bank_window.geometry;
    let to_bank = (
        f64::from(b.x + b.width / 2 - g.x - 30),
        f64::from(b.y + b.height / 2 - g.y - 30),
    );
    for (dx, dy) in [(2000.0, 0.0), (0.0, 2000.0), (-2000.0, -2000.0), to_bank] {
        move_by(&c, dx, dy, &mut [&mut work, &mut bank]);
        let (x, y) = *work.events.motions.last().expect("motion");
        assert!(
            (20.0..120.0).contains(&x) && (20.0..100.0).contains(&y),
            "moving by {dx},{dy} left the region: {x},{y}"
        );
    }
    assert!(
        bank.events.pointer_enter.is_none(),
        "the pointer reached banking"
    );

    // The escape binding frees it: the same move now reaches banking's window.
    c.input(chord(&[KEY_LEFTMETA], KEY_ESC));
    work.roundtrip();
    assert_eq!(work.events.constraint, ["confined", "unconfined"]);
    let (x, y) = *work.events.motions.last().expect("motion");
    let to_bank = (
        f64::from(b.x + b.width / 2 - g.x) - x,
        f64::from(b.y + b.height / 2 - g.y) - y,
    );
    move_by(&c, to_bank.0, to_bank.1, &mut [&mut work, &mut bank]);
    assert!(
        bank.events.pointer_enter.is_some(),
        "the released pointer could not leave the confining window"
    );
}

#[test]
fn the_session_lock_ends_a_vm_pointer_lock() {
    let c = Compositor::start(TWO_VMS);
    let (mut work, wt, pointer) = app(&c, "work", "game", (400, 300));
    user_clicks(&c, &mut work, "game");
    let _lock = lock(&mut work, &wt.surface, &pointer);
    assert_eq!(work.events.constraint, ["locked"]);
    let _locker = c.spawn("host", "swaylock", &["--color", "00ff00"]);
    wait_constraint_events(
        &mut work,
        2,
        "the lock screen left the VM's pointer lock on",
    );
    // smithay repeats `unlocked` when the pointer then leaves the surface for the lock screen.
    let mut seen = work.events.constraint.clone();
    seen.dedup();
    assert_eq!(seen, ["locked", "unlocked"]);
    // While locked the VM reads no motion at all, relative or not.
    let (seen, relative) = (work.events.motions.len(), work.events.relative.len());
    move_by(&c, 30.0, 30.0, &mut [&mut work]);
    assert_eq!(
        (work.events.motions.len(), work.events.relative.len()),
        (seen, relative),
        "the VM read the pointer while the screen was locked"
    );
}

#[test]
fn a_second_constraint_on_one_surface_is_a_protocol_error_that_ends_only_that_app() {
    let c = Compositor::start(TWO_VMS);
    let (mut bank, _bt, _) = app(&c, "banking", "bank app", (300, 240));
    let (mut work, wt, pointer) = app(&c, "work", "game", (400, 300));
    user_clicks(&c, &mut work, "game");
    let constraints: ZwpPointerConstraintsV1 = work.bind(1);
    let _lock =
        constraints.lock_pointer(&wt.surface, &pointer, None, Lifetime::Oneshot, &work.qh, ());
    let _confine = constraints.confine_pointer(
        &wt.surface,
        &pointer,
        None,
        Lifetime::Persistent,
        &work.qh,
        (),
    );
    let err = work
        .try_roundtrip()
        .expect_err("a second constraint was accepted");
    assert!(err.contains("zwp_pointer_constraints_v1"), "{err}");
    c.wait_windows("the game gone", |ws| ws.iter().all(|w| w.title != "game"));
    // The compositor and banking's app go on.
    bank.roundtrip();
    assert!(c.answers());
}
