//! Logging into Bulkhead for real: the desktop test machine (`rootfs/build-guest --profile
//! desktop`) boots under QEMU (TCG) with virtio-gpu, a virtio keyboard and tablet; greetd and
//! tuigreet start the session; Bulkhead runs on DRM/KMS with libinput and a logind seat.
//! Everything is typed and clicked through QMP and seen through QMP screendumps of the
//! scanouts, as a person at the machine would (docs/session.md).

mod common;
#[path = "desktop/machine.rs"]
mod machine;

use bulkhead_ipc::{OutputInfo, Reply, WindowInfo};
use common::Image;
use machine::{example, Boot, Machine};

/// `[appearance] background`'s default: Bulkhead's desktop.
const BACKGROUND: [u8; 3] = [0x1e, 0x1e, 0x24];
/// The locker's colour (`swaylock -c ff00ff`).
const LOCKER: [u8; 3] = [0xff, 0x00, 0xff];
/// work's frame colour.
const WORK: [u8; 3] = [0x30, 0x60, 0xff];
/// A notification's background (`compositor/src/notify.rs`).
const NOTICE: [u8; 3] = [0x26, 0x26, 0x2c];
/// The launcher's selected entry (`compositor/src/launcher.rs`).
const LAUNCHER_SELECTED: [u8; 3] = [0x44, 0x44, 0x50];

fn config(renderer: &str, outputs: &str) -> String {
    format!(
        r##"[session]
lock = "swaylock -f -c ff00ff"
renderer = "{renderer}"

[keyboard]
# QMP's key presses come one command at a time; no repeats under a slow machine.
repeat-delay = 2000

[[vm]]
name = "work"
color = "#3060ff"

[[app]]
name = "Terminal"
command = ["foot"]
{outputs}"##
    )
}

/// Whether two colours are the same up to rounding (GLES and pixman blend a little
/// differently).
fn near(a: &[u8], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.abs_diff(y) <= 3)
}

/// The share of `img`'s pixels that are `color`.
fn share(img: &Image, color: [u8; 3]) -> f64 {
    let n = img
        .rgba
        .chunks_exact(4)
        .filter(|p| near(&p[..3], color))
        .count();
    n as f64 / (img.width as f64 * img.height as f64)
}

/// Bulkhead's desktop: some of its background shows (windows may cover most of it).
fn is_desktop(img: &Image) -> bool {
    share(img, BACKGROUND) > 0.02
}

/// How many pixels are light (text on a console).
fn lit(img: &Image) -> usize {
    img.rgba
        .chunks_exact(4)
        .filter(|p| p[0] > 0x80 && p[1] > 0x80 && p[2] > 0x80)
        .count()
}

/// How many pixels are bright white (the greeter's labels; its other text is grey).
fn bright(img: &Image) -> usize {
    img.rgba
        .chunks_exact(4)
        .filter(|p| p[..3].iter().all(|c| *c > 230))
        .count()
}

/// A text screen (the greeter or a console): black with some text, none of Bulkhead's colours.
fn is_text_screen(img: &Image) -> bool {
    share(img, [0, 0, 0]) > 0.9 && share(img, BACKGROUND) == 0.0 && lit(img) > 100
}

fn reply(m: &mut Machine, args: &str) -> Option<Reply> {
    m.msg(args).and_then(|v| serde_json::from_value(v).ok())
}

fn outputs(m: &mut Machine) -> Vec<OutputInfo> {
    match reply(m, "outputs") {
        Some(Reply::Outputs(o)) => o,
        other => panic!("msg outputs answered {other:?}"),
    }
}

fn windows(m: &mut Machine) -> Vec<WindowInfo> {
    match reply(m, "windows") {
        Some(Reply::Windows(w)) => w,
        _ => Vec::new(),
    }
}

fn wait_windows(m: &mut Machine, what: &str, f: impl Fn(&[WindowInfo]) -> bool) -> Vec<WindowInfo> {
    let mut found = Vec::new();
    m.wait(what, |m| {
        found = windows(m);
        f(&found)
    });
    found
}

/// Which QEMU head shows the output `name` (virtio-gpu's connectors are Virtual-1, -2, ...).
fn head_of(name: &str) -> usize {
    name.strip_prefix("Virtual-")
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|n| n.checked_sub(1))
        .unwrap_or_else(|| panic!("{name} is not a virtio-gpu output"))
}

/// The greeter is on screen; typing the user, Enter, the password, Enter starts Bulkhead.
fn log_in(m: &mut Machine) {
    let greeter = m.wait_screen(0, "the greeter (tuigreet)", is_text_screen);
    m.type_on_console("user\n");
    // The password prompt comes once greetd has answered; keys typed before it go into the
    // user name (tuigreet edits it until then). The prompt's label is drawn bright white, as
    // the user name's is, while the echoed name, a blinking cursor and "Please wait..." are
    // grey: the prompt doubles the bright pixels. (Counting every lit pixel let the echo of
    // the name pass for the prompt on a loaded machine.)
    let labels = bright(&greeter);
    assert!(labels > 50, "no bright label on the greeter");
    m.wait_screen(0, "tuigreet's password prompt", |img| {
        is_text_screen(img) && bright(img) > labels * 3 / 2
    });
    m.type_on_console("bulkhead\n");
    m.wait_screen(0, "Bulkhead's desktop after logging in", is_desktop);
    m.wait("bulkhead msg answering", |m| reply(m, "version").is_some());
}

/// The logind session of `user`, if any.
fn user_session(m: &mut Machine) -> Option<String> {
    let out = m.sh_ok("loginctl list-sessions --no-legend | awk '$3 == \"user\" {print $1}'");
    out.split_whitespace().next().map(str::to_string)
}

fn session_active(m: &mut Machine, id: &str) -> bool {
    m.sh_ok(&format!("loginctl show-session {id} -p Active --value"))
        .trim()
        == "yes"
}

/// Test 2: Super opens the launcher, typing filters, Enter starts foot; typed text shows; a
/// click focuses another window; a client on a VM socket is framed in its VM's colour.
/// How many pixels of window `id`'s content (its top `rows` rows at most) on screen match
/// `pred`, wherever the window is now (its first geometry may predate its first configure).
fn window_pixels(
    m: &mut Machine,
    id: u64,
    outs: &[OutputInfo],
    rows: i32,
    pred: impl Fn(&[u8]) -> bool,
) -> usize {
    let Some(w) = windows(m).into_iter().find(|w| w.id == id) else {
        return 0;
    };
    let Some(on) = outs.iter().find(|o| Some(&o.name) == w.output.as_ref()) else {
        return 0;
    };
    let img = m.screen(head_of(&on.name));
    let g = w.geometry;
    (g.y..g.y + g.height.min(rows))
        .flat_map(|y| (g.x..g.x + g.width).map(move |x| (x, y)))
        .map(|(x, y)| (x - on.geometry.x, y - on.geometry.y))
        .filter(|&(x, y)| x >= 0 && y >= 0 && x < img.width as i32 && y < img.height as i32)
        .filter(|&(x, y)| pred(&img.pixel(x, y)))
        .count()
}

fn keyboard_and_pointer(m: &mut Machine, heads: usize) {
    m.chord(&["meta_l"]);
    m.wait("the launcher on screen", |m| {
        (0..heads).any(|h| share(&m.screen(h), LAUNCHER_SELECTED) > 0.005)
    });
    m.type_text("ter");
    m.type_text("\n");
    let wins = wait_windows(m, "foot from the launcher", |w| {
        w.iter()
            .any(|w| w.domain == "host" && w.app_id == "foot" && w.focused)
    });
    let first = wins
        .iter()
        .find(|w| w.app_id == "foot")
        .cloned()
        .expect("foot");
    let outs = outputs(m);
    // foot maps its window before its shell has printed a prompt; keys typed in between were
    // lost in the GLES session under TCG (foot never redrew): wait for the prompt's light
    // pixels first.
    m.wait("foot's prompt", |m| {
        window_pixels(m, first.id, &outs, 40, |px| px.iter().all(|c| *c > 150)) > 50
    });
    // Text typed into foot: a line whose background is pure magenta, drawn by foot.
    m.type_text("printf '\\e[48;2;255;0;255m%40s\\e[m\\n' x\n");
    m.wait("the typed command's output in foot", |m| {
        window_pixels(m, first.id, &outs, i32::MAX, |px| near(px, LOCKER)) > 1000
    });
    let first = windows(m)
        .into_iter()
        .find(|w| w.id == first.id)
        .expect("the first foot");

    // A second window takes the focus; a click on the first gives it back.
    m.msg("action spawn foot").expect("spawn a second foot");
    let wins = wait_windows(m, "a second foot, focused", |w| {
        w.iter().filter(|w| w.app_id == "foot").count() == 2
            && w.iter()
                .any(|w| w.app_id == "foot" && w.id != first.id && w.focused)
    });
    let second = wins
        .iter()
        .find(|w| w.app_id == "foot" && w.id != first.id)
        .cloned()
        .expect("second foot");
    // The tablet spans the whole layout.
    let layout = outs
        .iter()
        .map(|o| o.geometry)
        .reduce(|a, b| {
            let (x, y) = (a.x.min(b.x), a.y.min(b.y));
            bulkhead_ipc::Rect {
                x,
                y,
                width: (a.x + a.width).max(b.x + b.width) - x,
                height: (a.y + a.height).max(b.y + b.height) - y,
            }
        })
        .expect("outputs");
    let target = &layout;
    let inside = |x: i32, y: i32, r: &bulkhead_ipc::Rect| {
        x >= r.x && y >= r.y && x < r.x + r.width && y < r.y + r.height
    };
    let point = (first.geometry.y..first.geometry.y + first.geometry.height)
        .step_by(8)
        .flat_map(|y| {
            (first.geometry.x..first.geometry.x + first.geometry.width)
                .step_by(8)
                .map(move |x| (x, y))
        })
        .find(|&(x, y)| inside(x, y, target) && !inside(x, y, &second.frame))
        .expect("a visible point of the first foot");
    m.click(
        point.0 - target.x,
        point.1 - target.y,
        (target.width, target.height),
    );
    wait_windows(m, "the clicked foot focused", |w| {
        w.iter().any(|w| w.id == first.id && w.focused)
    });

    // A client of the work VM's socket, inside the machine, framed in work's colour.
    m.sh_ok(
        "cd /home/user && setsid -f runuser -u user -- env XDG_RUNTIME_DIR=/run/user/1000 \
         WAYLAND_DISPLAY=/run/user/1000/bulkhead/vms/work/wayland-0 foot --title vm-foot \
         >/tmp/vm-foot.log 2>&1 </dev/null",
    );
    let wins = wait_windows(m, "foot on work's socket", |w| {
        w.iter().any(|w| w.domain == "work")
    });
    let vm = wins
        .iter()
        .find(|w| w.domain == "work")
        .cloned()
        .expect("work window");
    let on = outs
        .iter()
        .find(|o| Some(&o.name) == vm.output.as_ref())
        .cloned()
        .expect("the VM window's output");
    let head = head_of(&on.name);
    // Its border: a column of work's colour at least 100 pixels tall on the window's output.
    let what = format!("a border in work's colour on head {head} for {vm:?}");
    m.wait_screen(head, &what, |img| {
        (0..img.width as i32).any(|x| {
            let mut run = 0;
            (0..img.height as i32).any(|y| {
                run = if near(&img.pixel(x, y), WORK) {
                    run + 1
                } else {
                    0
                };
                run >= 100
            })
        })
    });
}

/// Test 3: Ctrl-Alt-F2 shows the text console and Bulkhead lets go of the seat; Ctrl-Alt-F1
/// brings the desktop back, redrawn.
fn vt_switch(m: &mut Machine, heads: usize) {
    let id = user_session(m).expect("the user's session");
    m.chord(&["ctrl", "alt", "f2"]);
    m.wait_screen(0, "the text console on VT 2", is_text_screen);
    m.wait("the session inactive (seat released)", |m| {
        !session_active(m, &id)
    });
    m.wait("Bulkhead paused", |m| {
        m.session_log().contains("session paused")
    });
    m.chord(&["ctrl", "alt", "f1"]);
    for head in 0..heads {
        m.wait_screen(head, "the desktop back after Ctrl-Alt-F1", is_desktop);
    }
    m.wait("Bulkhead active again", |m| {
        m.session_log().contains("session active again")
    });
}

/// Test 4 (second half): swaylock covers every output; the password unlocks.
fn lock_and_unlock(m: &mut Machine, heads: usize) {
    m.msg("action spawn 'swaylock -c ff00ff'")
        .expect("spawn swaylock");
    for head in 0..heads {
        m.wait_screen(head, "swaylock covering this output", |img| {
            share(img, LOCKER) > 0.5
        });
    }
    unlock(m, heads);
}

fn unlock(m: &mut Machine, heads: usize) {
    m.type_text("bulkhead\n");
    for head in 0..heads {
        m.wait_screen(head, "the desktop after unlocking", is_desktop);
    }
}

/// Test 5: the session locks before the machine sleeps; the first frame after waking up is
/// the locker on every output.
fn lock_before_sleep(m: &mut Machine, heads: usize) {
    let since = m.sh_ok("date +%s").trim().to_string();
    m.sh_ok("systemctl suspend --no-block");
    // Asleep (QEMU's run state), then woken through QMP. A guest may also wake by itself
    // at once (seen on a second suspend of a boot); its journal then says it slept.
    let mut asleep = false;
    for _ in 0..600 {
        let status = m.qmp("query-status", serde_json::json!({}));
        if status["status"] == "suspended" {
            asleep = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if asleep {
        m.qmp("system_wakeup", serde_json::json!({}));
    } else {
        let slept = m.sh_ok(&format!(
            "journalctl -k --no-pager --since @{since} | grep -c 'PM: suspend exit' || true"
        ));
        assert_ne!(slept.trim(), "0", "the machine never went to sleep");
    }
    for head in 0..heads {
        let img = m.screen(head);
        assert!(
            share(&img, LOCKER) > 0.5,
            "head {head} did not show the locker first after waking up"
        );
    }
    let log = m.session_log();
    assert!(
        log.contains("locked on every output"),
        "Bulkhead never saw the lock on every output before sleeping:\n{log}"
    );
    unlock(m, heads);
}

/// Test 6: the quit action ends the session: back at the greeter, nothing of it left running.
fn log_out(m: &mut Machine) {
    m.msg("action quit");
    m.wait_screen(0, "the greeter after logging out", is_text_screen);
    m.wait("no process of the user left", |m| {
        m.sh("pgrep -u user").0 != 0
    });
    assert_eq!(
        user_session(m),
        None,
        "the user's logind session outlived the logout"
    );
}

/// Test 7: a broken config at login still gives a usable session, with a notification naming
/// the error by file, line and column.
fn broken_config_login(m: &mut Machine) {
    m.sh_ok(
        "sed -i 's/^renderer = .*/renderer = \"vulkan\"/' /home/user/.config/bulkhead/config.toml",
    );
    log_in(m);
    let log = m.session_log();
    assert!(
        log.contains("/home/user/.config/bulkhead/config.toml:3:12: unknown variant `vulkan`")
            && log.contains("starting with the default config"),
        "no file:line:col in the session log:\n{log}"
    );
    m.wait_screen(0, "the notification of the broken config", |img| {
        share(img, NOTICE) > 0.005
    });
    // Usable: apps start, input works.
    m.msg("action spawn foot").expect("spawn foot");
    wait_windows(m, "foot in the session started with defaults", |w| {
        w.iter().any(|w| w.app_id == "foot")
    });
}

/// The compositor's peak resident memory (VmHWM) in KiB, read inside the machine.
fn compositor_peak_kib(m: &mut Machine) -> u64 {
    let (_, out) = m.sh("grep VmHWM /proc/$(pgrep -o -x bulkhead)/status");
    out.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM for bulkhead: {out:?}"))
}

/// Test 8: a VM client's 16384×16384 buffer (1 GiB, `examples/huge-buffer.rs`), mostly off
/// screen, is shown where it is visible and uploaded only there: the GLES renderer's own
/// import would make a 1 GiB texture of it (and copy 1 GiB) in a machine with 2 GiB.
fn huge_vm_buffer(m: &mut Machine) {
    let before = compositor_peak_kib(m);
    m.sh_ok(
        "setsid -f runuser -u user -- env XDG_RUNTIME_DIR=/run/user/1000 \
         WAYLAND_DISPLAY=/run/user/1000/bulkhead/vms/work/wayland-0 \
         /run/bulkhead-install/add/huge-buffer huge >/tmp/huge.log 2>&1 </dev/null",
    );
    let wins = wait_windows(m, "the huge buffer's window", |w| {
        w.iter().any(|w| w.domain == "work" && w.title == "huge")
    });
    let w = wins
        .iter()
        .find(|w| w.title == "huge")
        .cloned()
        .expect("huge");
    let outs = outputs(m);
    let on = outs
        .iter()
        .find(|o| Some(&o.name) == w.output.as_ref())
        .cloned()
        .unwrap_or_else(|| panic!("the huge window is on no output: {w:?} {outs:?}"));
    let head = head_of(&on.name);
    // The block: magenta left of 512 pixels into the content, green from there to 1024, on
    // the first 512 rows; whatever of it is on screen must show. Above it, the title bar
    // across the screen in work's colours (white with blue text: it opened without focus).
    let (ox, oy) = (w.geometry.x - on.geometry.x, w.geometry.y - on.geometry.y);
    let bar_y = w.frame.y - on.geometry.y + 2..oy - 2;
    // It opened behind the host's windows: only where none of them is counts.
    let others: Vec<bulkhead_ipc::Rect> = wins
        .iter()
        .filter(|o| o.id != w.id)
        .map(|o| o.frame)
        .collect();
    let uncovered = |x: i32, y: i32| {
        let (gx, gy) = (x + on.geometry.x, y + on.geometry.y);
        !others
            .iter()
            .any(|r| gx >= r.x && gy >= r.y && gx < r.x + r.width && gy < r.y + r.height)
    };
    m.wait_screen(
        head,
        &format!("the huge buffer's corner and its title bar in {w:?}"),
        |img| {
            let (mut visible, mut right) = (0, 0);
            for y in oy.max(0)..(oy + 512).min(img.height as i32) {
                for x in ox.max(0)..(ox + 1024).min(img.width as i32) {
                    if !uncovered(x, y) {
                        continue;
                    }
                    visible += 1;
                    let want = if x - ox < 512 { LOCKER } else { [0, 0xc0, 0] };
                    if near(&img.pixel(x, y), want) {
                        right += 1;
                    }
                }
            }
            let (mut bar, mut bar_right) = (0, 0);
            for y in bar_y.clone().filter(|y| *y >= 0) {
                for x in (ox.max(0)..img.width as i32).filter(|x| uncovered(*x, y)) {
                    bar += 1;
                    let px = img.pixel(x, y);
                    if near(&px, WORK) || near(&px, [0xff, 0xff, 0xff]) {
                        bar_right += 1;
                    }
                }
            }
            visible > 5_000
                && right * 100 >= visible * 99
                && bar > 100
                && bar_right * 100 >= bar * 80
        },
    );
    let grown = compositor_peak_kib(m).saturating_sub(before);
    assert!(
        grown < 256 * 1024,
        "the compositor's peak memory grew by {} MiB for a 1 GiB buffer mostly off screen",
        grown / 1024
    );
    let log = m.session_log();
    assert!(
        log.contains("a 16384×16384 buffer: uploading only what is visible of it"),
        "{log}"
    );
}

#[test]
fn the_pixman_session_from_the_greeter_to_logout() {
    let layout = r#"
[[output]]
name = "Virtual-2"
position = "0,0"

[[output]]
name = "Virtual-1"
position = "1024,0"
"#;
    let mut m = Machine::boot(Boot {
        outputs: 2,
        config: &config("pixman", layout),
        add: &[],
    });
    // 1: the greeter, the login, Bulkhead's desktop drawn with pixman.
    log_in(&mut m);
    let outs = outputs(&mut m);
    assert!(
        outs.iter().all(|o| o.renderer.as_deref() == Some("pixman")),
        "{outs:?}"
    );
    // 4: both outputs lit, laid out as [[output]] says.
    let pos = |name: &str| {
        outs.iter()
            .find(|o| o.name == name)
            .map(|o| (o.geometry.x, o.geometry.y))
    };
    assert_eq!(pos("Virtual-2"), Some((0, 0)), "{outs:?}");
    assert_eq!(pos("Virtual-1"), Some((1024, 0)), "{outs:?}");
    m.wait_screen(1, "the second output lit", is_desktop);
    keyboard_and_pointer(&mut m, 2);
    vt_switch(&mut m, 2);
    lock_and_unlock(&mut m, 2);
}

#[test]
fn sleep_logout_and_a_broken_config() {
    let mut m = Machine::boot(Boot {
        outputs: 2,
        config: &config("pixman", ""),
        add: &[],
    });
    log_in(&mut m);
    lock_before_sleep(&mut m, 2);
    log_out(&mut m);
    broken_config_login(&mut m);
}

#[test]
fn the_gles_session_on_llvmpipe() {
    let mut m = Machine::boot(Boot {
        outputs: 1,
        config: &config("auto", ""),
        add: &[example("huge-buffer")],
    });
    log_in(&mut m);
    let outs = outputs(&mut m);
    assert_eq!(
        outs.iter()
            .map(|o| o.renderer.as_deref())
            .collect::<Vec<_>>(),
        [Some("gles")],
        "GLES must be in use (a fallback to pixman fails this test)"
    );
    let log = m.session_log();
    assert!(log.contains("renderer: GLES on llvmpipe"), "{log}");
    keyboard_and_pointer(&mut m, 1);
    huge_vm_buffer(&mut m);
}
