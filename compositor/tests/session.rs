//! Host desktop tools against the headless compositor: swayidle is told when the user goes idle
//! and comes back, waybar's panel is drawn, swaylock covers every output and a killed locker
//! leaves the session locked. VM clients see none of these protocols (clients.rs).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

fn wait(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn swayidle_hears_when_the_user_is_idle_and_back() {
    let c = Compositor::start(TWO_VMS);
    let idle = c.dir.path().join("idle");
    let back = c.dir.path().join("back");
    let _swayidle = c.spawn(
        "host",
        "swayidle",
        &[
            "-w",
            "timeout",
            "1",
            &format!("touch {}", idle.display()),
            "resume",
            &format!("touch {}", back.display()),
        ],
    );
    wait("swayidle ran its timeout command", || idle.exists());
    assert!(!back.exists());
    c.input(vec![bulkhead_ipc::InputEvent::PointerMotion {
        x: 10.0,
        y: 10.0,
    }]);
    wait("swayidle ran its resume command", || back.exists());
}

#[test]
fn waybar_draws_its_panel() {
    let c = Compositor::start(TWO_VMS);
    let dir = c.dir.path();
    std::fs::write(
        dir.join("waybar.json"),
        r#"{"layer": "top", "position": "top", "height": 30,
            "modules-center": ["custom/hello"],
            "custom/hello": {"format": "hello from waybar"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("waybar.css"),
        "* { font-family: monospace; font-size: 14px; }\n\
         window#waybar { background-color: #ff00aa; color: #ffffff; }\n",
    )
    .unwrap();
    let config = dir.join("waybar.json");
    let style = dir.join("waybar.css");
    let _bar = c.spawn(
        "host",
        "waybar",
        &[
            "-c",
            config.to_str().unwrap(),
            "-s",
            style.to_str().unwrap(),
        ],
    );
    let mut img = c.screenshot("waybar");
    wait("the panel is drawn", || {
        img = c.screenshot("waybar");
        img.pixel(20, 15) == [0xff, 0x00, 0xaa]
    });
    // Across the top, 30 pixels high, and not below.
    assert_eq!(img.pixel(1260, 15), [0xff, 0x00, 0xaa]);
    assert_ne!(img.pixel(20, 40), [0xff, 0x00, 0xaa]);
    // Its text is there: some pixels of the centre are not the background.
    let text = (560..720)
        .filter(|&x| img.pixel(x, 15) != [0xff, 0x00, 0xaa])
        .count();
    assert!(text > 5, "no text in the panel");
}

#[test]
fn swaylock_covers_every_output_and_a_killed_locker_leaves_it_locked() {
    let c = Compositor::start(&format!("{TWO_VMS}\n[headless]\noutputs = 2\n"));
    let _app = c.spawn("work", "weston-simple-shm", &[]);
    let w = c.wait_window("work", "simple-shm");
    let g = w.geometry;
    let mut lock = c.spawn("host", "swaylock", &["--color", "00ff00"]);
    let green = [0x00, 0xff, 0x00];
    let mut img = c.screenshot("locked");
    wait("both outputs show the locker", || {
        img = c.screenshot("locked");
        img.pixel(10, 10) == green && img.pixel(1280 + 10, 10) == green
    });
    // No window content anywhere while locked: the window's place is the locker's colour.
    assert_eq!(img.pixel(g.x + g.width / 2, g.y + g.height / 2), green);
    assert_eq!(img.pixel(1280 + 640, 400), green);

    // The locker dies: the session stays locked (nothing of the desktop comes back). First
    // the event that proves the compositor saw it go: its green surface leaves the screen.
    unsafe_kill(&mut lock);
    let mut img = c.screenshot("locker-killed");
    wait("the killed locker's surface is gone", || {
        img = c.screenshot("locker-killed");
        img.pixel(10, 10) != green && img.pixel(1280 + 10, 10) != green
    });
    // One flat colour over both outputs: no window, no frame, no title of the desktop.
    let first = img.pixel(0, 0);
    for y in (0..800).step_by(7) {
        for x in (0..2560).step_by(7) {
            let p = img.pixel(x, y);
            assert_eq!(p, first, "pixel {x},{y} shows {p:?} after the locker died");
        }
    }
    assert_ne!(first, WORK);
    assert_ne!(first, green);
}

/// Types `text` (lowercase letters only) and Enter through the compositor's input path.
fn type_line(c: &Compositor, text: &str) {
    // evdev codes of the US layout's letters, a to z.
    const LETTERS: [u32; 26] = [
        30, 48, 46, 32, 18, 33, 34, 35, 23, 36, 37, 38, 50, 49, 24, 25, 16, 19, 31, 20, 22, 47, 17,
        45, 21, 44,
    ];
    let mut events = Vec::new();
    for ch in text.bytes().chain(std::iter::once(b'\n')) {
        let code = if ch == b'\n' {
            28
        } else {
            LETTERS[(ch - b'a') as usize]
        };
        for pressed in [true, false] {
            events.push(bulkhead_ipc::InputEvent::Key { code, pressed });
        }
    }
    c.input(events);
}

#[test]
fn swaylock_unlocks_with_the_right_password_only() {
    // swaylock authenticates through PAM; pam_wrapper gives it a test service whose only
    // password is "sesame" for this user, so no real account is touched.
    let c = Compositor::start(TWO_VMS);
    let _app = c.spawn("work", "weston-simple-shm", &[]);
    let w = c.wait_window("work", "simple-shm");
    let centre = (
        w.geometry.x + w.geometry.width / 2,
        w.geometry.y + w.geometry.height / 2,
    );
    let dir = c.dir.path();
    let user = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    let user = String::from_utf8(user.stdout).unwrap().trim().to_string();
    let matrix = "/usr/lib/x86_64-linux-gnu/pam_wrapper/pam_matrix.so";
    let passdb = dir.join("passdb");
    std::fs::write(&passdb, format!("{user}:sesame:swaylock\n")).unwrap();
    let services = dir.join("pam.d");
    std::fs::create_dir_all(&services).unwrap();
    std::fs::write(
        services.join("swaylock"),
        format!(
            "auth required {matrix} passdb={p}\naccount required {matrix} passdb={p}\n",
            p = passdb.display()
        ),
    )
    .unwrap();
    // A failed attempt fills the indicator with red: the sign that the password was checked.
    let mut lock = c.spawn_env(
        "host",
        "swaylock",
        &["--color", "00ff00", "--inside-wrong-color", "ff0000"],
        &[
            ("LD_PRELOAD", "libpam_wrapper.so"),
            ("PAM_WRAPPER", "1"),
            ("PAM_WRAPPER_SERVICE_DIR", services.to_str().unwrap()),
        ],
    );
    let green = [0x00, 0xff, 0x00];
    wait("the locker covers the screen", || {
        c.screenshot("unlock-locked").pixel(centre.0, centre.1) == green
    });

    type_line(&c, "wrong");
    // Wait until swaylock shows that it checked and refused the password (its indicator, at
    // the output's centre, turns red), then check that nothing was unlocked.
    let red = [0xff, 0x00, 0x00];
    let mut img = c.screenshot("unlock-wrong");
    wait("swaylock refused the wrong password", || {
        img = c.screenshot("unlock-wrong");
        (560..720).any(|x| (320..480).any(|y| img.pixel(x, y) == red))
    });
    assert!(
        lock.0.try_wait().unwrap().is_none(),
        "a wrong password ended swaylock"
    );
    assert_ne!(img.pixel(centre.0, centre.1), WORK);
    assert_eq!(
        img.pixel(10, 10),
        green,
        "a wrong password unlocked the session"
    );

    type_line(&c, "sesame");
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = lock.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "swaylock did not accept the password"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "swaylock ended with {status}");
    // The desktop is back: the window and its frame in work's colour.
    wait("the desktop shows again", || {
        let img = c.screenshot("unlocked");
        img.pixel(centre.0, centre.1) != green
            && img.pixel(w.frame.x + 1, w.frame.y + w.frame.height / 2) == WORK
    });
}

/// SIGKILL, as a crash would end it.
fn unsafe_kill(g: &mut ChildGuard) {
    let _ = g.0.kill();
    let _ = g.0.wait();
}

#[test]
fn a_config_reload_changes_the_keymap_live_and_a_bad_one_changes_nothing() {
    let c = Compositor::start(TWO_VMS);
    let out = c.dir.path().join("typed.txt");
    let script = format!(
        "read a; read b; echo \"$a$b\" > {0}; read c; echo \"$c\" >> {0}",
        out.display()
    );
    let _foot = c.spawn("host", "foot", &["sh", "-c", &script]);
    let w = c.wait_window("host", "");
    c.wait_windows("foot focused", |ws| {
        ws.iter().any(|x| x.id == w.id && x.focused)
    });
    const KEY_Y: u32 = 21;
    const KEY_ENTER: u32 = 28;
    let mut keys = chord(&[], KEY_Y);
    keys.extend(chord(&[], KEY_ENTER));
    c.input(keys.clone());

    // The file changes under the running session: German layout, where that key is "z".
    let config = c.dir.path().join("config.toml");
    std::fs::write(
        &config,
        TWO_VMS.replace("[keyboard]", "[keyboard]\nlayout = \"de\""),
    )
    .unwrap();
    wait("the config is reloaded", || {
        c.log_text().contains("Config reloaded")
    });
    c.input(keys.clone());
    wait("foot got both lines", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "yz\n");

    // A broken file is refused with its reason, and the session carries on as it was.
    std::fs::write(&config, "[[vm]]\nname = 5\n").unwrap();
    wait("the bad config is refused", || {
        c.log_text().contains("Config not reloaded")
    });
    assert!(c.log_text().contains("config.toml:2:"), "{}", c.log_text());
    // Still the German layout.
    c.input(keys);
    wait("foot got the third line", || {
        std::fs::read_to_string(&out).is_ok_and(|s| s.lines().count() == 2)
    });
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "yz\nz\n");
}

#[test]
fn autostart_runs_with_the_session_and_idle_runs_the_lock_command() {
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let c = Compositor::start(&format!(
        "{TWO_VMS}\n[session]\nautostart = [\"echo $XDG_CURRENT_DESKTOP > {}\"]\n\
         lock = \"swaylock --color 0000ff\"\nidle-lock = \"2s\"\n",
        started.display()
    ));
    wait("the autostart command ran", || {
        std::fs::read_to_string(&started).is_ok_and(|s| s == "Bulkhead\n")
    });
    // No input for two seconds: the lock command runs and the screen is the locker's.
    let mut img = c.screenshot("idle-locked");
    wait("the idle lock covers the screen", || {
        img = c.screenshot("idle-locked");
        img.pixel(640, 400) == [0x00, 0x00, 0xff]
    });
    assert!(c.log_text().contains("idle for 2s: locking"));
}

#[test]
fn grim_captures_on_the_host_and_a_vm_has_nothing_to_bind() {
    let c = Compositor::start(&format!("{TWO_VMS}\n[headless]\noutputs = 2\n"));
    let _app = c.spawn("work", "weston-simple-shm", &[]);
    let w = c.wait_window("work", "simple-shm");
    let shot = c.dir.path().join("grim.png");
    // The whole layout (both outputs) as grim sees it, against the compositor's own screenshot.
    let (ok, _) = c.run("host", "grim", &[shot.to_str().unwrap()]);
    assert!(ok, "grim failed on the host socket");
    let img = Image::load(&shot);
    let ours = c.screenshot("grim-reference");
    assert_eq!((img.width, img.height), (2560, 800));
    // The window's frame in work's colour, where the compositor draws it.
    let f = w.frame;
    assert_eq!(img.pixel(f.x + 1, f.y + f.height / 2), WORK);
    assert_eq!(
        img.pixel(f.x + 1, f.y + f.height / 2),
        ours.pixel(f.x + 1, f.y + f.height / 2)
    );
    // One output, the second: grim -o.
    let second = c.dir.path().join("grim-2.png");
    let (ok, _) = c.run(
        "host",
        "grim",
        &["-o", "HEADLESS-2", second.to_str().unwrap()],
    );
    assert!(ok, "grim -o failed");
    assert_eq!(
        (Image::load(&second).width, Image::load(&second).height),
        (1280, 800)
    );
    // A VM is never offered the protocol: grim there finds nothing to capture with.
    let vm_shot = c.dir.path().join("vm.png");
    let (ok, _) = c.run_for(10, "work", "grim", &[vm_shot.to_str().unwrap()]);
    assert!(!ok && !vm_shot.exists(), "grim captured from a VM socket");
}

#[test]
fn wlr_randr_lists_and_changes_outputs_on_the_host_only() {
    // The config places the second output below the first at scale 2.
    let c = Compositor::start(&format!(
        "{TWO_VMS}\n[headless]\noutputs = 2\n[[output]]\nname = \"HEADLESS-2\"\nposition = \"0,800\"\nscale = 2.0\n"
    ));
    let second = |c: &Compositor| {
        c.outputs()
            .into_iter()
            .find(|o| o.name == "HEADLESS-2")
            .expect("HEADLESS-2")
    };
    let o = second(&c);
    assert_eq!(
        (o.geometry.x, o.geometry.y, o.geometry.width),
        (0, 800, 640)
    );
    assert_eq!(o.scale, 2.0);

    let (ok, listing) = c.run("host", "wlr-randr", &[]);
    assert!(ok, "wlr-randr failed on the host socket");
    assert!(
        listing.contains("HEADLESS-1") && listing.contains("HEADLESS-2"),
        "{listing}"
    );
    assert!(
        listing.contains("Position: 0,800") && listing.contains("Scale: 2.000000"),
        "{listing}"
    );

    // Move it to the right at scale 1 and give the first a custom mode.
    let (ok, _) = c.run(
        "host",
        "wlr-randr",
        &["--output", "HEADLESS-2", "--pos", "1280,0", "--scale", "1"],
    );
    assert!(ok, "wlr-randr could not move HEADLESS-2");
    let (ok, _) = c.run(
        "host",
        "wlr-randr",
        &["--output", "HEADLESS-1", "--custom-mode", "1024x768"],
    );
    assert!(ok, "wlr-randr could not set a custom mode");
    let o = second(&c);
    assert_eq!(
        (
            o.geometry.x,
            o.geometry.y,
            o.geometry.width,
            o.geometry.height
        ),
        (1280, 0, 1280, 800)
    );
    let img = c.screenshot("randr");
    // The canvas: 1024 (the first, now narrower) up to 1280 + 1280.
    assert_eq!((img.width, img.height), (2560, 800));

    // Turning one off works; turning off the last is refused and changes nothing.
    let (ok, _) = c.run("host", "wlr-randr", &["--output", "HEADLESS-2", "--off"]);
    assert!(ok);
    assert_eq!(c.outputs().len(), 1);
    let (ok, _) = c.run("host", "wlr-randr", &["--output", "HEADLESS-1", "--off"]);
    assert!(!ok, "the last output could be turned off");
    assert_eq!(c.outputs().len(), 1);

    // A VM has nothing to bind.
    let (ok, _) = c.run("work", "wlr-randr", &[]);
    assert!(!ok, "a VM client could use wlr-output-management");

    // Editing [[output]] in the file applies on reload: the second output comes back on, to
    // the left of the first.
    let config = c.dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "{TWO_VMS}\n[headless]\noutputs = 2\n[[output]]\nname = \"HEADLESS-2\"\nposition = \"-1280,0\"\n"
        ),
    )
    .unwrap();
    c.action("reload-config", None);
    wait("the reloaded [[output]] applies", || {
        c.outputs()
            .iter()
            .any(|o| o.name == "HEADLESS-2" && (o.geometry.x, o.geometry.y) == (-1280, 0))
    });
}

#[test]
fn an_x11_app_is_framed_as_a_host_window() {
    // Debian 12's Xwayland (22.1) cannot pair X11 windows with surfaces the way smithay 0.7
    // needs; install-deps unpacks Debian 13's into its own root for this test.
    let xwayland = Path::new("/opt/bulkhead-test/xwayland/bin");
    assert!(
        xwayland.join("Xwayland").exists(),
        "no Xwayland 23.1+ in {}: run .ci/install-deps",
        xwayland.display()
    );
    let c = Compositor::start_with_path_first(
        &format!("{TWO_VMS}\n[session]\nxwayland = true\n"),
        xwayland,
    );
    let mut display = None;
    wait("Xwayland is ready", || {
        display = match c.request(&bulkhead_ipc::Request::Domains) {
            bulkhead_ipc::Reply::Domains(d) => d.into_iter().find_map(|d| d.x11_display),
            _ => None,
        };
        display.is_some()
    });
    let display = display.unwrap();
    // The VMs' domains never get an X display.
    let domains = match c.request(&bulkhead_ipc::Request::Domains) {
        bulkhead_ipc::Reply::Domains(d) => d,
        other => panic!("unexpected reply {other:?}"),
    };
    assert!(domains
        .iter()
        .all(|d| (d.name == "host") == d.x11_display.is_some()));
    let _xterm = c.spawn_env(
        "host",
        "xterm",
        &["-geometry", "60x15", "-bg", "#ff00aa", "-title", "x11 here"],
        &[("DISPLAY", display.as_str())],
    );
    let w = c.wait_window("host", "x11 here");
    assert_eq!(w.app_id, "XTerm");
    let mut img = c.screenshot("x11-xterm");
    wait("xterm's pixels are drawn", || {
        img = c.screenshot("x11-xterm");
        img.pixel(
            w.geometry.x + w.geometry.width / 2,
            w.geometry.y + w.geometry.height / 2,
        ) == [0xff, 0x00, 0xaa]
    });
    // A host frame: neutral colour around it, the title without a VM label.
    assert_framed(&img, &w, HOST, "x11 here", true);
    // Closing through the compositor ends the window.
    c.action("close", None);
    c.wait_windows("the X11 window is gone", |ws| {
        ws.iter().all(|x| x.id != w.id)
    });
}
