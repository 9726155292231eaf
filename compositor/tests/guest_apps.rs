//! Apps of every toolkit Debian 12 ships, together in one boot of the full guest (issue 19):
//! GTK 3, GTK 4, Qt 5, Qt 6 and foot, started at once through `vm-run` with no environment
//! of their own (the image's session environment picks Wayland). Each shows a window framed
//! in its VM's colour with content of its own; the GTK 3 and Qt apps leave the title bar to
//! the compositor; an app's own cursor image is drawn; middle-click paste works inside the
//! domain and never reaches another.
//!
//! X11 apps in the same boot (issue 20): xterm, xeyes and GTK forced to X11 are windows of
//! their own (not one rootful Xwayland window), titled as X titles them and framed; an X
//! menu opens at its parent; a word selected in xterm pastes into foot in the same VM and
//! not in another; closing a frame closes its X window.
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

/// Runs each (app id, command) in the full guest at once, as its launcher entry would, and
/// waits for all their windows: how long each took.
fn launch_together<'a>(
    c: &Compositor,
    apps: impl Iterator<Item = (&'a str, &'a [&'a str])> + Clone,
) -> HashMap<&'a str, Duration> {
    let started = Instant::now();
    for (_, cmd) in apps.clone() {
        let mut args = vec!["full"];
        args.extend_from_slice(cmd);
        let (code, _, err) = c.vm_cli("vm-run", &args);
        assert_eq!(code, 0, "vm-run {cmd:?}: {err}");
    }
    let want = apps.clone().count();
    let mut first: HashMap<&str, Duration> = HashMap::new();
    while first.len() < want {
        for w in c.windows().into_iter().filter(|w| w.domain == "full") {
            if let Some((id, _)) = apps.clone().find(|(id, _)| *id == w.app_id) {
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
    first
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
    let first = launch_together(&c, APPS.iter().map(|(id, _, cmd)| (*id, *cmd)));
    for (id, toolkit, _) in APPS {
        println!(
            "{toolkit} ({id}): first window {:.1} s after the launch",
            first[*id].as_secs_f64()
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

    x11_apps(&c, &bank_window);
    stop(&c, "full");
}

/// The X11 apps, started together: (what finds the window, command).
const X_APPS: &[(&str, &[&str])] = &[
    (
        "XTerm",
        &[
            "xterm",
            "-T",
            "xterm in a VM",
            "-fa",
            "Monospace",
            "-fs",
            "11",
            "-e",
            "sh",
            "-c",
            "echo wordfromx; sleep 3600",
        ],
    ),
    ("XEyes", &["xeyes"]),
    // GTK 3 forced to X11: its window's class is its program's name, capitalised.
    (
        "Gtk3-widget-factory",
        &["env", "GDK_BACKEND=x11", "gtk3-widget-factory"],
    ),
    // A terminal to paste xterm's word into.
    (
        "xpaste",
        &[
            "foot",
            "--app-id",
            "xpaste",
            "sh",
            "-c",
            "stty -icanon; head -c 9 > xpasted",
        ],
    ),
];

const X_WORD: &str = "wordfromx";

/// X11 apps in the booted full guest: Xwayland starts on demand behind the guest proxy.
fn x11_apps(c: &Compositor, bank_window: &WindowInfo) {
    let env = run_ok(c, "full", &["env"]);
    assert!(
        env.lines().any(|l| l == "DISPLAY=:0"),
        "the full guest (with Xwayland) has no DISPLAY=:0 in its session: {env}"
    );
    let first = launch_together(c, X_APPS.iter().copied());
    for (id, _) in X_APPS {
        println!(
            "X11 {id}: first window {:.1} s after the launch",
            first[*id].as_secs_f64()
        );
    }
    // Each X app is a window of its own, titled as X titles it, with its own content.
    // (foot, the paste target, shows nothing yet.)
    let x_apps: Vec<&str> = X_APPS
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| *id != "xpaste")
        .collect();
    let mut ids = Vec::new();
    for id in &x_apps {
        let (w, _) = drawn_and_framed(c, id);
        ids.push(w.id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), x_apps.len(), "X apps share a window");
    assert_eq!(window_of(c, "XTerm").title, "xterm in a VM");
    assert_eq!(window_of(c, "XEyes").title, "xeyes");

    // xterm's main menu (Ctrl and the left button): an X menu, which opens at the pointer in
    // its parent window.
    let xterm = window_of(c, "XTerm");
    c.focus(xterm.id);
    let g = xterm.geometry;
    let at = (g.x + g.width / 2, g.y + g.height / 2);
    c.input(vec![InputEvent::PointerMotion {
        x: at.0 as f64,
        y: at.1 as f64,
    }]);
    let before = c.screenshot("x-menu-before");
    c.input(vec![
        InputEvent::Key {
            code: 29,
            pressed: true,
        },
        InputEvent::PointerButton {
            button: 272,
            pressed: true,
        },
    ]);
    // What changed around the pointer: the menu (white, with black text, over xterm's white
    // and whatever is beside it).
    let near = |img: &Image| -> Vec<(i32, i32)> {
        let (x0, x1) = ((at.0 - 400).max(0), (at.0 + 400).min(img.width as i32));
        let (y0, y1) = ((at.1 - 200).max(0), (at.1 + 800).min(img.height as i32));
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| (x, y)))
            .filter(|&(x, y)| img.pixel(x, y) != before.pixel(x, y))
            .collect()
    };
    let deadline = Instant::now() + APP_TIMEOUT;
    let menu = loop {
        let img = c.screenshot("x-menu");
        let changed = near(&img);
        if changed.len() > 3000 {
            break changed;
        }
        assert!(Instant::now() < deadline, "xterm's menu never showed");
        std::thread::sleep(Duration::from_millis(300));
    };
    // Its box: the columns and rows with many changes (a text cursor that changed with the
    // focus has few).
    let dense = |key: fn(&(i32, i32)) -> i32, keep: &dyn Fn(&(i32, i32)) -> bool, min: usize| {
        let mut count: HashMap<i32, usize> = HashMap::new();
        for p in menu.iter().filter(|p| keep(p)) {
            *count.entry(key(p)).or_default() += 1;
        }
        let mut lines: Vec<i32> = count
            .into_iter()
            .filter(|(_, n)| *n >= min)
            .map(|(k, _)| k)
            .collect();
        lines.sort();
        (
            lines.first().copied().unwrap_or(0),
            lines.last().copied().unwrap_or(0),
        )
    };
    let (left, right) = dense(|p| p.0, &|_| true, 40);
    let (top, bottom) = dense(|p| p.1, &|p| (left..=right).contains(&p.0), 20);
    println!("xterm's menu: ({left},{top})-({right},{bottom}), pointer at {at:?}");
    // Xt puts the menu's title under the pointer.
    assert!(
        (left..=right).contains(&at.0) && (top..=at.1).contains(&at.1) && at.1 - top < 60,
        "the menu ({left},{top})-({right},{bottom}) is not at the pointer {at:?}"
    );
    // Released away from the menu: nothing chosen.
    c.input(vec![
        InputEvent::PointerMotion {
            x: (g.x + 5) as f64,
            y: (g.y + g.height - 5) as f64,
        },
        InputEvent::PointerButton {
            button: 272,
            pressed: false,
        },
        InputEvent::Key {
            code: 29,
            pressed: false,
        },
    ]);

    // A word double-clicked in xterm (the X primary selection) pastes into foot with a
    // middle click; banking's paste never gets it.
    c.focus(xterm.id);
    let (_, before) = c.selection_state(true);
    click(c, 272, (g.x + 20, g.y + 8), 2);
    // xterm keeps the keyboard until the bridge has set the selection anew: the compositor
    // takes a selection only from the app with the keyboard.
    wait_until(
        "xterm's selection set in the VM",
        APP_TIMEOUT.as_secs(),
        || {
            let (owner, now) = c.selection_state(true);
            owner.as_deref() == Some("full") && now != before
        },
    );
    let paster = window_of(c, "xpaste");
    c.focus(paster.id);
    let into = (paster.geometry.x + 40, paster.geometry.y + 40);
    wait_until(
        "xterm's word pasted into foot",
        APP_TIMEOUT.as_secs(),
        || {
            click(c, 274, into, 1);
            let (code, out, _) = c.vm_cli("vm-run", &["--wait", "full", "cat", "xpasted"]);
            code == 0 && out == X_WORD
        },
    );
    c.focus(bank_window.id);
    assert_ne!(
        String::from_utf8_lossy(&paste(c, "banking", "--primary --no-newline")),
        X_WORD,
        "banking pasted the VM's X selection"
    );

    // The frame's close closes the X window.
    let eyes = window_of(c, "XEyes");
    c.focus(eyes.id);
    c.action("close", None);
    c.wait_windows("xeyes closed", |ws| ws.iter().all(|w| w.id != eyes.id));
}
