//! The long checks of apps in real guests (`.ci/test --long`; `#[ignore]`d in the CI tier):
//! every launcher app of the full guest opens, and Firefox ESR and Chromium play a video from
//! a web server inside their own VM, which has no network interface. Figures (time to first
//! window, dropped frames under TCG) are printed for docs/compatibility.md.
//!
//! Images: the full guest `.ci/test` builds (target/guest/full), and the browsers' guest
//! (`rootfs/build-guest --profile full --packages firefox-esr,chromium,python3 --out
//! target/guest/browsers`, which `.ci/test --long` builds).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bulkhead_ipc::WindowInfo;
use common::vms::*;
use common::*;

const TEAL: [u8; 3] = [0x16, 0xa0, 0x85];
/// A browser's first start under TCG (its profile is created then).
const START_TIMEOUT: Duration = Duration::from_secs(300);

fn image(name: &str, how: &str) -> PathBuf {
    let g = guest().with_file_name(name);
    assert!(
        g.join("root.img").exists(),
        "no {name} guest in {}: {how}",
        g.display()
    );
    g
}

/// Waits for a window of `vm` that is not in `known`.
fn new_window(
    c: &Compositor,
    vm: &str,
    known: &[u64],
    what: &str,
    timeout: Duration,
) -> WindowInfo {
    let start = Instant::now();
    loop {
        if let Some(w) = c
            .windows()
            .into_iter()
            .find(|w| w.domain == vm && !known.contains(&w.id))
        {
            return w;
        }
        assert!(
            start.elapsed() < timeout,
            "{what} showed no window in {timeout:?}\n{}",
            c.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the content of window `id` is not blank, then checks its frame.
fn assert_drawn(c: &Compositor, id: u64, name: &str) {
    c.focus(id);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let img = c.screenshot(&format!("long-{name}"));
        let w = c
            .windows()
            .into_iter()
            .find(|w| w.id == id)
            .unwrap_or_else(|| panic!("{name}'s window went away"));
        let g = w.geometry;
        let visible = bulkhead_ipc::Rect {
            x: g.x.max(0),
            y: g.y.max(0),
            width: g.width.min(img.width as i32 - g.x.max(0)),
            height: g.height.min(img.height as i32 - g.y.max(0)),
        };
        // A blank fill has one colour; a terminal with just its prompt has a few.
        if img.distinct_colours(visible) >= 3 {
            assert_framed(&img, &w, TEAL, &format!("[{}] {}", w.domain, w.title), true);
            return;
        }
        assert!(Instant::now() < deadline, "{name} never drew content");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
#[ignore = "long: .ci/test --long"]
fn every_launcher_app_of_the_full_guest_opens_a_window() {
    let g = image(
        "full",
        "run .ci/test (it builds the full guest with its apps)",
    );
    let written = bulkhead_config::Config::load(&g.join("config.toml")).expect("its config");
    let apps = written.vms[0].spec.apps.clone();
    assert!(apps.len() >= 5, "the full guest exports only {apps:?}");
    let c = Compositor::start(&config(&debian_vm("full", "#16a085", &g, "256M")));
    let (code, _, err) = c.vm_cli("vm-start", &["full"]);
    assert_eq!(code, 0, "{err}");
    for app in &apps {
        let known: Vec<u64> = c.windows().iter().map(|w| w.id).collect();
        let started = Instant::now();
        let mut args = vec!["full"];
        args.extend(app.command.iter().map(String::as_str));
        let (code, _, err) = c.vm_cli("vm-run", &args);
        assert_eq!(code, 0, "{}: {err}", app.name);
        if app.command.iter().any(|a| a == "--server") {
            // A server has no window: it must keep running (its clients, later in the list,
            // need it).
            let program = &app.command[0];
            wait_until(&format!("{} running", app.name), 60, || {
                let (code, _, _) = c.vm_cli("vm-run", &["--wait", "full", "pgrep", "-x", program]);
                code == 0
            });
            println!("{}: runs (a server, no window)", app.name);
            continue;
        }
        let w = new_window(&c, "full", &known, &app.name, START_TIMEOUT);
        println!(
            "{}: first window {:.1} s after the launch ({:?})",
            app.name,
            started.elapsed().as_secs_f64(),
            w.title
        );
        assert_drawn(&c, w.id, &app.name.replace(' ', "-"));
        c.action("close", None);
        let gone = Instant::now();
        while c.windows().iter().any(|o| o.id == w.id) && gone.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(200));
        }
        // An app that asks before closing is ended instead (the next one needs the memory).
        // (Not by name otherwise: closing Foot must leave Foot Server running.)
        if c.windows().iter().any(|o| o.id == w.id) {
            let _ = c.vm_cli(
                "vm-run",
                &["--wait", "full", "pkill", "-x", &app.command[0]],
            );
        }
    }
    stop(&c, "full");
}

/// The page: a muted, autoplaying clip; when it starts and ends, the page posts to the server
/// (the start time and the playback quality).
const PAGE: &str = r#"<!doctype html>
<title>bulkhead video</title>
<video id="v" src="clip.webm" autoplay muted playsinline width="640" height="360"></video>
<script>
const v = document.getElementById("v");
const who = location.hash.slice(1);
v.addEventListener("playing", () => fetch("/playing-" + who, {method: "POST", body: "1"}), {once: true});
v.addEventListener("ended", () => {
  const q = v.getVideoPlaybackQuality();
  fetch("/report-" + who, {method: "POST", body: JSON.stringify({
    total: q.totalVideoFrames, dropped: q.droppedVideoFrames, duration: v.duration})});
});
</script>
"#;

/// A web server for the page and clip, on the guest's loopback; what is posted to it lands
/// in /tmp/<path>.
const SERVER: &str = r#"import http.server, os, sys
class H(http.server.SimpleHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(min(int(self.headers.get("Content-Length", 0)), 65536))
        with open("/tmp/" + os.path.basename(self.path), "wb") as f:
            f.write(body)
        self.send_response(204)
        self.end_headers()
    def log_message(self, *args):
        pass
os.chdir(sys.argv[1])
http.server.ThreadingHTTPServer(("127.0.0.1", 8000), H).serve_forever()
"#;

/// Firefox's prefs: no first-run pages and nothing it would fetch by itself (there is no
/// network either way), autoplay allowed.
const FIREFOX_PREFS: &str = r#"user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("startup.homepage_welcome_url", "");
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("toolkit.telemetry.enabled", false);
user_pref("app.update.auto", false);
user_pref("app.normandy.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("network.dns.disablePrefetch", true);
user_pref("network.prefetch-next", false);
user_pref("browser.newtabpage.enabled", false);
user_pref("media.autoplay.default", 0);
"#;

/// Encodes the test clip (5 s, 640×360, 30 frames/s, VP8) into `dir`.
fn make_clip(dir: &Path) {
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=5:size=640x360:rate=30",
            "-c:v",
            "libvpx",
            "-b:v",
            "800k",
        ])
        .arg(dir.join("clip.webm"))
        .output()
        .expect("ffmpeg is missing: run .ci/install-deps");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads /tmp/NAME in the guest, once it exists.
fn guest_file(c: &Compositor, name: &str, timeout: Duration, what: &str) -> String {
    let start = Instant::now();
    loop {
        let (code, out, _) = c.vm_cli(
            "vm-run",
            &["--wait", "browsers", "cat", &format!("/tmp/{name}")],
        );
        if code == 0 && !out.is_empty() {
            return out;
        }
        assert!(
            start.elapsed() < timeout,
            "{what}: no /tmp/{name} after {timeout:?}\n{}",
            c.log_text()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
#[ignore = "long: .ci/test --long"]
fn browsers_play_a_local_video_in_a_vm_without_network() {
    let g = image(
        "browsers",
        "run .ci/test --long, or rootfs/build-guest --profile full --packages \
         firefox-esr,chromium,python3 --out target/guest/browsers",
    );
    // Two browsers' worth of memory (they run one after the other).
    let vm = debian_vm("browsers", "#16a085", &g, "1G").replace("memory = 1024", "memory = 2048");
    let c = Compositor::start(&config(&vm));
    let (code, _, err) = c.vm_cli("vm-start", &["browsers"]);
    assert_eq!(code, 0, "{err}");
    // No network interface at all: nothing can leave the machine.
    let nics = run_ok(&c, "browsers", &["ls", "/sys/class/net"]);
    assert_eq!(
        nics.trim(),
        "lo",
        "the browsers' VM has a network interface"
    );

    // The page, the clip and the server, through the VM's home.
    let www = c.dir.path().join("data/bulkhead/vms/browsers/home/www");
    std::fs::create_dir_all(&www).expect("www in the VM's home");
    std::fs::write(www.join("index.html"), PAGE).unwrap();
    std::fs::write(www.join("server.py"), SERVER).unwrap();
    std::fs::write(www.join("user.js"), FIREFOX_PREFS).unwrap();
    make_clip(&www);
    let (code, _, err) = c.vm_cli(
        "vm-run",
        &[
            "browsers",
            "python3",
            "/home/user/www/server.py",
            "/home/user/www",
        ],
    );
    assert_eq!(code, 0, "the web server: {err}");
    wait_until("the guest's web server", 60, || {
        let (code, out, _) = c.vm_cli(
            "vm-run",
            &[
                "--wait",
                "browsers",
                "python3",
                "-c",
                "import urllib.request; print(len(urllib.request.urlopen('http://127.0.0.1:8000/clip.webm').read()))",
            ],
        );
        code == 0 && out.trim().parse::<u64>().is_ok_and(|n| n > 1000)
    });

    let browsers: [(&str, &[&str]); 2] = [
        (
            "firefox",
            &[
                "sh",
                "-c",
                "mkdir -p /tmp/ff && cp /home/user/www/user.js /tmp/ff/ && \
                 exec firefox-esr --new-instance --profile /tmp/ff \
                 'http://127.0.0.1:8000/index.html#firefox'",
            ],
        ),
        (
            "chromium",
            &[
                "chromium",
                "--user-data-dir=/tmp/chromium",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-domain-reliability",
                "--password-store=basic",
                "--autoplay-policy=no-user-gesture-required",
                "http://127.0.0.1:8000/index.html#chromium",
            ],
        ),
    ];
    for (name, cmd) in browsers {
        let known: Vec<u64> = c.windows().iter().map(|w| w.id).collect();
        let started = Instant::now();
        let mut args = vec!["browsers"];
        args.extend_from_slice(cmd);
        let (code, _, err) = c.vm_cli("vm-run", &args);
        assert_eq!(code, 0, "{name}: {err}");
        let w = new_window(&c, "browsers", &known, name, START_TIMEOUT);
        let first_window = started.elapsed();
        let playing = guest_file(&c, &format!("playing-{name}"), START_TIMEOUT, name);
        let playing_after = started.elapsed();
        assert_eq!(playing, "1");
        let report = guest_file(&c, &format!("report-{name}"), START_TIMEOUT, name);
        let q: serde_json::Value = serde_json::from_str(&report).expect("the page's report");
        let (total, dropped) = (
            q["total"].as_u64().unwrap_or(0),
            q["dropped"].as_u64().unwrap_or(0),
        );
        assert!(total > 0, "{name} decoded no frame: {report}");
        assert_drawn(&c, w.id, name);
        println!(
            "{name}: first window {:.1} s, playing {:.1} s after the launch; \
             {dropped} of {total} frames dropped ({report})",
            first_window.as_secs_f64(),
            playing_after.as_secs_f64(),
        );
        // One browser at a time: the next needs the memory and both vCPUs.
        run_ok(
            &c,
            "browsers",
            &["sh", "-c", "pkill -f '[f]irefox|[c]hromium'; true"],
        );
        wait_until(&format!("{name}'s windows gone"), 60, || {
            c.windows().iter().all(|o| o.domain != "browsers")
        });
    }
    stop(&c, "browsers");
}
