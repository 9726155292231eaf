//! Input and focus belong to the user (threat model, promise 1): raw-wire VM clients try to
//! take the keyboard with popup grabs, stale or foreign serials, new windows, maximize and
//! fullscreen, and a menu left open when the screen locks. Input goes through the
//! compositor's own input path (the headless backend's synthetic events).

mod common;

use bulkhead_ipc::Rect;
use common::client::{Client, MAGENTA, WHITE};
use common::*;

const KEY_A: u32 = 30;
const KEY_B: u32 = 48;

/// Types `key` and lets both clients read what they were sent.
fn type_key(c: &Compositor, key: u32, clients: &mut [&mut Client]) {
    c.input(chord(&[], key));
    for cl in clients.iter_mut() {
        cl.roundtrip();
    }
}

fn focused_title(c: &Compositor) -> Option<String> {
    c.windows().into_iter().find(|w| w.focused).map(|w| w.title)
}

#[test]
fn a_vm_popup_grab_with_serial_zero_takes_no_key_from_another_domain() {
    let c = Compositor::start(TWO_VMS);
    let (mut work, wt) = window(&c, "work", "work app", (420, 160));
    let (mut bank, _bt) = window(&c, "banking", "bank app", (300, 240));
    user_clicks(&c, &mut bank, "bank app");
    // No input ever gave work this serial.
    let _popup = work.popup(&wt, 120, 80, MAGENTA, Some(0));
    type_key(&c, KEY_A, &mut [&mut work, &mut bank]);
    assert_eq!(bank.events.keys, vec![KEY_A], "banking lost its key");
    assert!(
        work.events.keys.is_empty(),
        "work's popup read {:?}",
        work.events.keys
    );
    assert!(
        work.events.popup_done,
        "the refused grab's popup was not dismissed"
    );
    assert_eq!(focused_title(&c).as_deref(), Some("bank app"));
}

#[test]
fn a_vm_popup_grab_with_a_stale_or_foreign_serial_is_refused() {
    let c = Compositor::start(TWO_VMS);
    let (mut work, wt) = window(&c, "work", "work app", (420, 160));
    let (mut bank, _bt) = window(&c, "banking", "bank app", (300, 240));
    // Work once had a real click; then the user moved on to banking.
    user_clicks(&c, &mut work, "work app");
    let stale = work.events.button_serial.expect("work's click serial");
    user_clicks(&c, &mut bank, "bank app");
    let foreign = bank.events.button_serial.expect("banking's click serial");
    for serial in [stale, foreign] {
        work.events.popup_done = false;
        let _popup = work.popup(&wt, 120, 80, MAGENTA, Some(serial));
        type_key(&c, KEY_A, &mut [&mut work, &mut bank]);
        assert!(
            work.events.keys.is_empty(),
            "work read {:?}",
            work.events.keys
        );
        assert!(
            work.events.popup_done,
            "grab with serial {serial} was not refused"
        );
    }
    assert_eq!(bank.events.keys, vec![KEY_A, KEY_A]);
}

#[test]
fn a_legitimate_menu_gets_keys_until_the_user_clicks_another_domain() {
    let c = Compositor::start(TWO_VMS);
    let (mut work, wt) = window(&c, "work", "work app", (420, 160));
    let (mut bank, _bt) = window(&c, "banking", "bank app", (300, 240));
    user_clicks(&c, &mut work, "work app");
    let serial = work.events.button_serial.expect("work's click serial");
    // The menu the user's click opened: honoured, it reads the keys.
    let _popup = work.popup(&wt, 120, 80, MAGENTA, Some(serial));
    type_key(&c, KEY_A, &mut [&mut work, &mut bank]);
    assert_eq!(
        work.events.keys,
        vec![KEY_A],
        "the legitimate menu got no key"
    );
    assert!(!work.events.popup_done);
    // A click on banking's window ends the grab and gives banking the keyboard, not work.
    user_clicks(&c, &mut bank, "bank app");
    work.roundtrip();
    assert!(
        work.events.popup_done,
        "the click elsewhere did not dismiss the menu"
    );
    type_key(&c, KEY_B, &mut [&mut work, &mut bank]);
    assert_eq!(
        work.events.keys,
        vec![KEY_A],
        "work read a key after the click elsewhere"
    );
    assert_eq!(bank.events.keys, vec![KEY_B]);
}

#[test]
fn compositor_bindings_end_a_vm_grab() {
    let c = Compositor::start(TWO_VMS);
    let (mut bank, _bt) = window(&c, "banking", "bank app", (300, 240));
    let (mut work, wt) = window(&c, "work", "work app", (420, 160));
    user_clicks(&c, &mut bank, "bank app");
    user_clicks(&c, &mut work, "work app");
    let serial = work.events.button_serial.expect("work's click serial");
    let _popup = work.popup(&wt, 120, 80, MAGENTA, Some(serial));
    // Alt-Tab wins over the menu's grab: the menu goes, banking gets the keyboard.
    c.input(chord(&[KEY_LEFTALT], KEY_TAB));
    c.wait_windows("banking focused by Alt-Tab", |ws| {
        ws.iter().any(|w| w.title == "bank app" && w.focused)
    });
    type_key(&c, KEY_A, &mut [&mut work, &mut bank]);
    assert!(work.events.popup_done, "Alt-Tab left the menu open");
    // Work saw Alt go down (it had the keyboard then), never the Tab nor what followed.
    assert_eq!(
        work.events.keys,
        vec![KEY_LEFTALT],
        "work read {:?}",
        work.events.keys
    );
    assert_eq!(bank.events.keys, vec![KEY_A]);
}

#[test]
fn a_vm_menu_open_when_the_screen_locks_reads_none_of_the_password() {
    let c = Compositor::start(TWO_VMS);
    let (mut work, wt) = window(&c, "work", "work app", (420, 160));
    user_clicks(&c, &mut work, "work app");
    let serial = work.events.button_serial.expect("work's click serial");
    let _popup = work.popup(&wt, 120, 80, MAGENTA, Some(serial));
    type_key(&c, KEY_A, &mut [&mut work]);
    assert_eq!(
        work.events.keys,
        vec![KEY_A],
        "the menu's grab was not honoured"
    );
    let _lock = c.spawn("host", "swaylock", &["--color", "00ff00"]);
    let mut img = c.screenshot("focus-locked");
    let green = [0x00, 0xff, 0x00];
    let deadline = std::time::Instant::now() + TIMEOUT;
    while img.pixel(10, 10) != green {
        assert!(
            std::time::Instant::now() < deadline,
            "swaylock never showed"
        );
        img = c.screenshot("focus-locked");
    }
    for key in [KEY_B, KEY_A, KEY_B] {
        type_key(&c, key, &mut [&mut work]);
    }
    assert!(work.events.popup_done, "the lock left the menu open");
    assert_eq!(
        work.events.keys,
        vec![KEY_A],
        "the menu read keys typed into the locker"
    );
    assert!(
        !work.events.has_keyboard,
        "work kept the keyboard while locked"
    );
}

#[test]
fn a_new_vm_window_does_not_take_focus_from_another_domain() {
    let c = Compositor::start(TWO_VMS);
    let (mut bank, _bt) = window(&c, "banking", "bank app", (300, 240));
    user_clicks(&c, &mut bank, "bank app");
    // Work maps a window while the user types in banking.
    let (mut work, _wt) = window(&c, "work", "intruder", (500, 400));
    type_key(&c, KEY_A, &mut [&mut work, &mut bank]);
    assert_eq!(bank.events.keys, vec![KEY_A], "banking lost the keyboard");
    assert!(work.events.keys.is_empty() && !work.events.has_keyboard);
    let ws = c.windows();
    let intruder = ws.iter().find(|w| w.title == "intruder").expect("intruder");
    let banking = ws.iter().find(|w| w.title == "bank app").expect("bank app");
    assert!(banking.focused && !intruder.focused);
    assert!(
        intruder.attention,
        "the unfocused window does not ask for attention"
    );
    // Stacked behind: the window list goes bottom to top.
    let pos = |t: &str| ws.iter().position(|w| w.title == t).expect(t);
    assert!(
        pos("intruder") < pos("bank app"),
        "the new window was raised over banking"
    );
    // Its title bar is drawn in the attention style (inverted: the domain colour on white),
    // and a notification names the VM.
    let img = c.screenshot("focus-attention");
    let bar = (
        intruder.frame.x + intruder.frame.width - 3,
        intruder.frame.y + 4,
    );
    if !Rect::contains(&banking.frame, bar.0, bar.1) {
        assert_eq!(
            img.pixel(bar.0, bar.1),
            [0xff, 0xff, 0xff],
            "no attention style"
        );
    }
    assert!(
        notification_diff(&img, 0, WORK, "[work] intruder wants attention") < 50,
        "no notification naming the VM"
    );
    // Alt-Tab offers it first; then it is focused and its style is back to normal.
    c.input(chord(&[KEY_LEFTALT], KEY_TAB));
    c.wait_windows("the intruder focused by Alt-Tab", |ws| {
        ws.iter()
            .any(|w| w.title == "intruder" && w.focused && !w.attention)
    });
}

#[test]
fn maximize_and_fullscreen_never_raise_a_vm_window_over_the_focused_domain() {
    let c = Compositor::start(TWO_VMS);
    let (mut work, wt) = window(&c, "work", "work app", (420, 160));
    let (mut bank, _bt) = window(&c, "banking", "bank app", (300, 240));
    user_clicks(&c, &mut bank, "bank app");
    wt.toplevel.set_maximized();
    work.roundtrip();
    c.wait_windows("work maximized", |ws| {
        ws.iter().any(|w| w.title == "work app" && w.maximized)
    });
    wt.toplevel.set_fullscreen(None);
    work.roundtrip();
    c.wait_windows("work fullscreen", |ws| {
        ws.iter().any(|w| w.title == "work app" && w.fullscreen)
    });
    let ws = c.windows();
    let pos = |t: &str| ws.iter().position(|w| w.title == t).expect(t);
    assert!(
        pos("work app") < pos("bank app"),
        "work was raised over banking"
    );
    assert!(ws[pos("bank app")].focused, "banking lost focus");
    type_key(&c, KEY_A, &mut [&mut work, &mut bank]);
    assert_eq!(bank.events.keys, vec![KEY_A]);
    assert!(work.events.keys.is_empty());
}

mod activation {
    use super::*;
    use wayland_client::globals::registry_queue_init;
    use wayland_protocols::xdg::activation::v1::client::{
        xdg_activation_token_v1::{self, XdgActivationTokenV1},
        xdg_activation_v1::XdgActivationV1,
    };

    wayland_client::delegate_noop!(common::client::Events: ignore XdgActivationV1);

    /// Tokens as they arrive (`done`), kept in a global list: the client's event state is
    /// shared with the other tests' fixture.
    static TOKENS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

    impl wayland_client::Dispatch<XdgActivationTokenV1, ()> for common::client::Events {
        fn event(
            _: &mut Self,
            _: &XdgActivationTokenV1,
            event: xdg_activation_token_v1::Event,
            _: &(),
            _: &wayland_client::Connection,
            _: &wayland_client::QueueHandle<Self>,
        ) {
            if let xdg_activation_token_v1::Event::Done { token } = event {
                TOKENS.lock().unwrap().push(token);
            }
        }
    }

    #[test]
    fn a_token_dies_when_its_domain_loses_the_keyboard() {
        let c = Compositor::start(TWO_VMS);
        let (mut work, wt) = window(&c, "work", "work app", (420, 160));
        let (mut bank, _bt) = window(&c, "banking", "bank app", (300, 240));
        // A token minted honestly: with the serial of the keyboard enter the user's click
        // into work caused.
        user_clicks(&c, &mut work, "work app");
        let serial = work.events.keyboard_enter.expect("work's keyboard enter");
        let (globals, _q) = registry_queue_init::<common::client::Events>(&work.conn).unwrap();
        let activation: XdgActivationV1 = globals.bind(&work.qh, 1..=1, ()).unwrap();
        let token = activation.get_activation_token(&work.qh, ());
        token.set_serial(serial, &work.seat);
        token.set_surface(&wt.surface);
        token.commit();
        work.roundtrip();
        let minted = TOKENS.lock().unwrap().pop().expect("a token");
        // The user moves on to banking; work then uses its token on its own window.
        user_clicks(&c, &mut bank, "bank app");
        activation.activate(minted, &wt.surface);
        work.roundtrip();
        type_key(&c, KEY_A, &mut [&mut work, &mut bank]);
        assert_eq!(
            bank.events.keys,
            vec![KEY_A],
            "the old token took the keyboard"
        );
        assert_eq!(focused_title(&c).as_deref(), Some("bank app"));
    }
}

#[test]
fn a_vm_opening_many_windows_takes_one_notification_place() {
    let c = Compositor::start(TWO_VMS);
    let (mut bank, _bt) = window(&c, "banking", "bank app", (300, 240));
    user_clicks(&c, &mut bank, "bank app");
    // Something the user should still see: banking's own notice.
    c.action("clipboard-copy", None);
    // Work opens window after window while banking has the keyboard.
    let mut work = Client::connect(&c.vm_socket("work"));
    let mut windows = Vec::new();
    for i in 0..6 {
        let t = work.toplevel(&format!("popup ad {i}"));
        work.map(&t, 120, 90, WHITE);
        windows.push(t);
    }
    c.wait_windows("six work windows", |ws| {
        ws.iter().filter(|w| w.domain == "work").count() == 6
    });
    let img = c.screenshot("focus-attention-flood");
    assert!(
        notification_diff(&img, 0, WORK, "[work] 6 windows want attention") < 50,
        "work's windows are not counted in one notice"
    );
    assert!(
        notification_diff(
            &img,
            1,
            BANKING,
            "Nothing copied: [banking] has no clipboard"
        ) < 50,
        "work's windows pushed banking's notice off the screen"
    );
}

#[test]
fn new_windows_of_different_sizes_do_not_hide_each_other() {
    let c = Compositor::start(TWO_VMS);
    let (_small, _s) = window(&c, "work", "small", (200, 150));
    let (_big, _b) = window(&c, "work", "big", (500, 400));
    let (_wide, _w) = window(&c, "work", "wide", (700, 120));
    let ws = c.windows();
    for (i, a) in ws.iter().enumerate() {
        for b in &ws[..i] {
            let (ra, rb) = (a.frame, b.frame);
            let overlap = ra.x < rb.x + rb.width
                && rb.x < ra.x + ra.width
                && ra.y < rb.y + rb.height
                && rb.y < ra.y + ra.height;
            assert!(
                !overlap,
                "{} covers part of {}: {ra:?} {rb:?}",
                a.title, b.title
            );
        }
    }
}

/// The stats count every key press and release the compositor handled (harnesses that type
/// through a virtual keyboard wait on it), with a window focused or none.
#[test]
fn stats_count_the_keys_handled() {
    let c = Compositor::start(TWO_VMS);
    let keys = || match c.request(&bulkhead_ipc::Request::Stats) {
        bulkhead_ipc::Reply::Stats { keys_handled, .. } => keys_handled,
        other => panic!("unexpected reply {other:?}"),
    };
    assert_eq!(keys(), 0);
    c.input(chord(&[], KEY_A));
    assert_eq!(keys(), 2);
    let mut work = Client::connect(&c.vm_socket("work"));
    let t = work.toplevel("typed into");
    work.map(&t, 100, 80, WHITE);
    c.focus(c.wait_window("work", "typed into").id);
    c.input(chord(&[KEY_A], KEY_B));
    assert_eq!(keys(), 6);
}
