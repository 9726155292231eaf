//! Apps of every toolkit Debian 12 ships, together in one boot of the full guest (issue 19):
//! GTK 3, GTK 4, Qt 5, Qt 6 and foot, started at once through `vm-run` with no environment
//! of their own (the image's session environment picks Wayland). Each shows a window framed
//! in its VM's colour with content of its own; the GTK 3 and Qt apps leave the title bar to
//! the compositor; an app's own cursor image is drawn; middle-click paste works inside the
//! domain and never reaches another.
//!
//! The full guest must carry the apps: `.ci/test` builds it with them (`rootfs/build-guest
//! --profile full --packages ...`, cached by that list).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bulkhead_ipc::{InputEvent, Rect, WindowInfo};
use common::client::{Client, WHITE};
use common::vms::*;
use common::*;

/// The apps, started together: (app id, toolkit, command).
const APPS: &[(&str, &str, &[&str])] = &[
    ("gtk3-demo-application", "GTK 3", &["gtk3-demo-application"]),
    ("gtk4-demo", "GTK 4", &["gtk4-demo"]),
    ("featherpad", "Qt 5", &["featherpad"]),
    ("qt6ct", "Qt 6", &["qt6ct"]),
    // A line to select, then the terminal reads exactly what is pasted into it.
    (
        "foot",
        "foot",
        &[
            "foot",
            "sh",
            "-c",
            "echo abcdefghijklmnopqrstuvwxyz; stty -icanon; head -c 26 > pasted",
        ],
    ),
];

const LINE: &str = "abcdefghijklmnopqrstuvwxyz";
const TEAL: [u8; 3] = [0x16, 0xa0, 0x85];
/// Under TCG, five apps starting at once on two vCPUs.
const APP_TIMEOUT: Duration = Duration::from_secs(300);

/// The full guest's directory.
fn full_guest() -> std::path::PathBuf {
    let g = guest().with_file_name("full");
    assert!(
        g.join("root.img").exists(),
        "no full guest in {}: run .ci/test, or rootfs/build-guest --profile full with the \
         packages .ci/test gives it",
        g.display()
    );
    g
}

fn window_of(c: &Compositor, app_id: &str) -> WindowInfo {
    c.windows()
        .into_iter()
        .find(|w| w.domain == "full" && w.app_id == app_id)
        .unwrap_or_else(|| panic!("{app_id} has no window"))
}

/// The part of `r` on the screenshot.
fn on_image(img: &Image, r: Rect) -> Rect {
    let (x, y) = (r.x.max(0), r.y.max(0));
    Rect {
        x,
        y,
        width: (r.x + r.width).min(img.width as i32) - x,
        height: (r.y + r.height).min(img.height as i32) - y,
    }
}

/// Focuses `app_id`'s window and waits until it shows content of its own (several colours
/// inside its frame: a blank or single-colour fill has one), then checks its frame and title
/// bar. Returns the window and the screenshot.
fn drawn_and_framed(c: &Compositor, app_id: &str) -> (WindowInfo, Image) {
    c.focus(window_of(c, app_id).id);
    let deadline = Instant::now() + APP_TIMEOUT;
    loop {
        let before = window_of(c, app_id);
        let img = c.screenshot(&format!("apps-{app_id}"));
        let w = window_of(c, app_id);
        let colours = img.distinct_colours(on_image(&img, w.geometry));
        // The same title and place on both sides of the screenshot: the frame checked below
        // is the one on it.
        if colours >= 8 && before == w {
            assert_framed(&img, &w, TEAL, &format!("[full] {}", w.title), true);
            return (w, img);
        }
        assert!(
            Instant::now() < deadline,
            "{app_id} never drew content of its own ({colours} colours)"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn click(c: &Compositor, button: u32, at: (i32, i32), times: usize) {
    let mut events = vec![InputEvent::PointerMotion {
        x: at.0 as f64,
        y: at.1 as f64,
    }];
    for _ in 0..times {
        events.push(InputEvent::PointerButton {
            button,
            pressed: true,
        });
        events.push(InputEvent::PointerButton {
            button,
            pressed: false,
        });
    }
    c.input(events);
}

#[test]
fn toolkit_apps_run_together_framed_with_their_own_pixels_in_one_full_guest() {
    let g = full_guest();
    let cfg = format!(
        "{}\n[[vm]]\nname = \"banking\"\ncolor = \"#2ecc71\"\n\n\
         [headless]\nwidth = 2560\nheight = 1440\n",
        config(&debian_vm("full", "#16a085", &g, "256M"))
    );
    let c = Compositor::start(&cfg);
    // Another domain's window, to paste in.
    let mut bank = Client::connect(&c.vm_socket("banking"));
    let bt = bank.toplevel("bank app");
    bank.map(&bt, 300, 200, WHITE);
    let bank_window = c.wait_window("banking", "bank app");

    let (code, _, err) = c.vm_cli("vm-start", &["full"]);
    assert_eq!(code, 0, "vm-start full: {err}");
    let missing = run_ok(
        &c,
        "full",
        &[
            "sh",
            "-c",
            "for p in gtk3-demo-application gtk4-demo featherpad qt6ct foot; do \
               command -v $p >/dev/null || echo $p; done",
        ],
    );
    assert!(
        missing.trim().is_empty(),
        "the full guest lacks {missing}: build it with the packages .ci/test gives it"
    );

    // All at once, each as its launcher entry would run it.
    let started = Instant::now();
    for (_, _, cmd) in APPS {
        let mut args = vec!["full"];
        args.extend_from_slice(cmd);
        let (code, _, err) = c.vm_cli("vm-run", &args);
        assert_eq!(code, 0, "vm-run {cmd:?}: {err}");
    }
    let mut first: HashMap<&str, Duration> = HashMap::new();
    while first.len() < APPS.len() {
        for w in c.windows().into_iter().filter(|w| w.domain == "full") {
            if let Some((id, ..)) = APPS.iter().find(|(id, ..)| *id == w.app_id) {
                first.entry(id).or_insert_with(|| started.elapsed());
            }
        }
        assert!(
            started.elapsed() < APP_TIMEOUT,
            "after {APP_TIMEOUT:?} only {:?} had windows\n{}",
            first.keys(),
            c.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (id, toolkit, _) in APPS {
        println!(
            "{toolkit} ({id}): first window {:.1} s after the launch",
            first[id].as_secs_f64()
        );
    }

    // Each: its own content in a frame of the VM's colour. The GTK 3 and Qt apps draw no
    // title bar of their own (GTK 3 through KDE server-decoration, Qt through
    // xdg-decoration); GTK 4 always draws its own (it has no server-side decorations).
    for (id, toolkit, _) in APPS {
        let (w, _) = drawn_and_framed(&c, id);
        if *id != "gtk4-demo" {
            assert!(
                !w.client_decorations,
                "{toolkit} ({id}) draws a title bar of its own inside the frame"
            );
        }
    }

    // FeatherPad's text area: Qt sets its I-beam from the guest's Adwaita theme, the same
    // image as the host's.
    let fp = window_of(&c, "featherpad");
    c.focus(fp.id);
    let at = (
        fp.geometry.x + fp.geometry.width / 2,
        fp.geometry.y + fp.geometry.height / 2,
    );
    c.input(vec![InputEvent::PointerMotion {
        x: at.0 as f64,
        y: at.1 as f64,
    }]);
    let deadline = Instant::now() + APP_TIMEOUT;
    loop {
        let img = c.screenshot("apps-featherpad-cursor");
        let (wrong, compared) = cursor_mismatches(&img, at, "xterm");
        if wrong == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "FeatherPad's I-beam never showed: {wrong} of {compared} pixels differ"
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    // Middle-click paste: a double-click selects foot's line (the domain's primary
    // selection); banking's paste never gets it; a middle click in foot pastes it.
    let foot = window_of(&c, "foot");
    c.focus(foot.id);
    let line_at = (foot.geometry.x + 30, foot.geometry.y + 8);
    click(&c, 272, line_at, 2);
    c.wait_selection("full", true);
    c.focus(bank_window.id);
    assert_ne!(
        String::from_utf8_lossy(&paste(&c, "banking", "--primary --no-newline")),
        LINE,
        "banking pasted the VM's primary selection"
    );
    c.focus(foot.id);
    click(&c, 274, line_at, 1);
    wait_until("foot's paste", APP_TIMEOUT.as_secs(), || {
        let (code, out, _) = c.vm_cli("vm-run", &["--wait", "full", "cat", "pasted"]);
        code == 0 && out == LINE
    });
    stop(&c, "full");
}
