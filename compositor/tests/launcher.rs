//! The launcher with the compositor's own key and pointer paths: tapping Super opens it (drawn
//! by the compositor, checked by pixel), typing filters, Enter runs a host app, a click runs a
//! VM app (here a VM that cannot boot: the user is told why), and VM apps are also written as
//! desktop entries for host launchers.

mod common;

use bulkhead_compositor::launcher::{ROW, WIDTH};
use common::*;

const KEY_ENTER: u32 = 28;
const KEY_T: u32 = 20;
const KEY_E: u32 = 18;
const KEY_R: u32 = 19;
const KEY_M: u32 = 50;

const CONFIG: &str = r##"
[[app]]
name = "Terminal"
command = ["foot"]

[[vm]]
name = "work"
color = "#3060ff"
[[vm.app]]
name = "Mail"
command = ["thunderbird"]

[[vm]]
name = "banking"
color = "#2ecc71"
[[vm.app]]
name = "Bank terminal"
command = ["foot"]

[keyboard]
repeat-rate = 0
"##;

/// The launcher's top left on the 1280x800 headless output.
const X0: i32 = (1280 - WIDTH) / 2;
const Y0: i32 = 800 / 5;

fn tap_super(c: &Compositor) {
    c.input(chord(&[], KEY_LEFTMETA));
}

/// The colour of the strip at the left of row `row` and of the row's background.
fn row(img: &Image, row: i32) -> ([u8; 3], [u8; 3]) {
    let y = Y0 + row * ROW + ROW / 2;
    (img.pixel(X0 + 2, y), img.pixel(X0 + WIDTH - 4, y))
}

#[test]
fn super_opens_the_launcher_typing_filters_and_enter_runs_a_host_app() {
    let c = Compositor::start(CONFIG);
    tap_super(&c);
    let mut img = c.screenshot("launcher-open");
    for _ in 0..50 {
        if row(&img, 4).0 == WORK {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        img = c.screenshot("launcher-open");
    }
    // Rows: search, [host], Terminal (selected), [work], Mail, [banking], Bank terminal.
    let (_, selected) = row(&img, 2);
    let (_, other) = row(&img, 4);
    assert_ne!(selected, other, "the first app is highlighted");
    assert_eq!(row(&img, 3).0, WORK, "[work] header in its colour");
    assert_eq!(row(&img, 4).0, WORK, "work's app in its colour");
    assert_eq!(row(&img, 5).0, BANKING);
    assert_eq!(row(&img, 6).0, BANKING);
    // Below the last row: the desktop, not the launcher.
    assert_ne!(row(&img, 7).1, other);

    // "term": the host's Terminal and banking's Bank terminal remain; Enter runs the first.
    let mut keys = Vec::new();
    for k in [KEY_T, KEY_E, KEY_R, KEY_M] {
        keys.extend(chord(&[], k));
    }
    c.input(keys);
    let mut img = c.screenshot("launcher-filtered");
    for _ in 0..50 {
        if row(&img, 4).0 == BANKING {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        img = c.screenshot("launcher-filtered");
    }
    assert_eq!(row(&img, 3).0, BANKING, "work has no match and is gone");
    c.input(chord(&[], KEY_ENTER));
    let w = c.wait_window("host", "");
    assert_eq!(w.app_id, "foot");
    // Closed: the rows are desktop again.
    let img = c.screenshot("launcher-closed");
    assert_ne!(row(&img, 3).0, BANKING);
}

#[test]
fn a_click_runs_a_vm_app_and_a_vm_that_cannot_start_says_why() {
    let c = Compositor::start(CONFIG);
    // Host launchers see the VM apps too.
    let entry = std::fs::read_to_string(
        c.dir
            .path()
            .join("data/applications/bulkhead-work-mail.desktop"),
    )
    .expect("desktop entry for work's Mail");
    assert!(entry.contains("Name=[work] Mail\n"), "{entry}");
    assert!(entry.contains("Exec=vm-run work thunderbird\n"), "{entry}");

    c.action("launcher", None);
    let (x, y) = (X0 + 100, Y0 + 4 * ROW + ROW / 2); // work's Mail
    click(&c, (x as f64, y as f64));
    // The VM's kernel does not exist: a notification in work's colour says the app did not
    // start, with the manager's reason.
    let x0 = 1280 - bulkhead_compositor::notify::WIDTH - bulkhead_compositor::notify::MARGIN;
    let y = bulkhead_compositor::notify::MARGIN + 1;
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let img = c.screenshot("launcher-vm-error");
        let texts = c.log_text();
        // Two notices in work's colour: "[work] starting for Mail", then the failure.
        let second =
            y + bulkhead_compositor::notify::HEIGHT + bulkhead_compositor::notify::MARGIN / 2;
        if img.pixel(x0 + 1, y) == WORK
            && img.pixel(x0 + 1, second) == WORK
            && texts.contains("[work] cannot run Mail: VM \"work\" has no kernel")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no notification about Mail; log:\n{texts}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// App icons (`icon = "…"`, PNG or SVG files) are drawn in their rows, decoded off the main
/// loop in decoder processes; an icon that is too large, too costly to draw or not an image is
/// left out and the log says why, and the launcher works as before.
#[test]
fn app_icons_are_drawn_and_hostile_ones_left_out() {
    use bulkhead_compositor::icons::SIZE;
    use bulkhead_compositor::launcher::{ICON_X, ICON_Y};
    let dir = tempfile::tempdir().unwrap();
    let mut red = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut red, 64, 64);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0xff, 0, 0].repeat(64 * 64)).unwrap();
    }
    // A valid PNG header claiming 100000×100000 pixels (and no pixels).
    let mut huge = Vec::new();
    {
        let enc = png::Encoder::new(&mut huge, 100_000, 100_000);
        let _header_only = enc.write_header();
    }
    let files = [
        // A fuzz finding, first in line: drawing it panicked the decoder (debug builds), which
        // took the icons after it down with it.
        (
            "ellipse.svg",
            include_bytes!("../fuzz/corpus/icon/refused-huge-ellipse.svg").to_vec(),
        ),
        ("red.png", red),
        (
            "green.svg",
            br##"<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><rect width="16" height="16" fill="#00ff00"/></svg>"##.to_vec(),
        ),
        ("huge.png", huge),
        ("broken.svg", b"<svg><rect".to_vec()),
    ];
    let mut config =
        String::from("[keyboard]\nrepeat-rate = 0\n[[vm]]\nname = \"work\"\ncolor = \"#3060ff\"\n");
    for (file, bytes) in &files {
        let path = dir.path().join(file);
        std::fs::write(&path, bytes).unwrap();
        config.push_str(&format!(
            "[[vm.app]]\nname = {file:?}\ncommand = [\"true\"]\nicon = {:?}\n",
            path.display().to_string()
        ));
    }
    let c = Compositor::start(&config);
    tap_super(&c);
    // Rows: the search line, [work], then the apps in order.
    let centre = |img: &Image, r: i32| {
        img.pixel(
            X0 + ICON_X + SIZE as i32 / 2,
            Y0 + r * ROW + ICON_Y + SIZE as i32 / 2,
        )
    };
    let deadline = std::time::Instant::now() + TIMEOUT;
    let img = loop {
        let img = c.screenshot("launcher-icons");
        if centre(&img, 3) == [0xff, 0, 0] && centre(&img, 4) == [0, 0xff, 0] {
            break img;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the icons never showed: {:?} {:?}",
            centre(&img, 3),
            centre(&img, 4)
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    for r in [2, 5, 6] {
        assert_eq!(centre(&img, r), row(&img, r).1, "row {r} drew an icon");
    }
    // Each hostile icon is logged with why (the log may trail the pixels).
    let expected = [
        "huge.png: the PNG is 100000×100000 pixels",
        "broken.svg: SVG:",
        "ellipse.svg: SVG: a shape or filter reaches far outside the image",
    ];
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let log = c.log_text();
        if expected.iter().all(|e| log.contains(e)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every refusal logged:\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
