//! Real Debian clients against the headless compositor, checked through IPC and by pixel.

mod common;

use bulkhead_ipc::{InputEvent, Reply};
use common::*;

#[test]
fn foot_in_work_vm_is_framed_in_work_colour() {
    let c = Compositor::start(TWO_VMS);
    let _foot = c.spawn("work", "foot", &["-o", "colors.background=101010"]);
    let w = c.wait_window("work", "foot");
    assert!(w.focused);
    assert_eq!(w.domain, "work");
    // foot's content needs a moment after mapping; the frame is ours from the first frame.
    let img = c.screenshot("foot-work");
    assert_framed(&img, &w, WORK, &format!("[work] {}", w.title), true);
    // The client's own pixels are inside the frame.
    let g = w.geometry;
    assert_eq!(
        img.pixel(g.x + g.width / 2, g.y + g.height / 2),
        [0x10, 0x10, 0x10]
    );
}

#[test]
fn host_window_gets_a_neutral_frame_without_label() {
    let c = Compositor::start(TWO_VMS);
    let _shm = c.spawn("host", "weston-simple-shm", &[]);
    let w = c.wait_window("host", "");
    let img = c.screenshot("host-shm");
    assert_framed(&img, &w, HOST, &w.title, true);
}

#[test]
fn two_domains_side_by_side_and_focus_follows_actions() {
    let c = Compositor::start(TWO_VMS);
    let _a = c.spawn("work", "foot", &[]);
    let a = c.wait_window("work", "foot");
    let _b = c.spawn("banking", "foot", &[]);
    let b = c.wait_window("banking", "foot");
    // A window of another domain opens without focus; the user gives it the keyboard.
    c.focus(b.id);
    let ws = c.windows();
    assert!(!ws.iter().find(|w| w.id == a.id).unwrap().focused);
    assert_ne!(a.geometry, b.geometry, "new windows cascade");
    let img = c.screenshot("two-domains");
    let b = ws.iter().find(|w| w.id == b.id).unwrap();
    assert_framed(&img, b, BANKING, &format!("[banking] {}", b.title), true);

    c.action("focus-window", Some(&a.id.to_string()));
    let ws = c.wait_windows("work focused", |ws| {
        ws.iter().any(|w| w.id == a.id && w.focused)
    });
    let a = ws.iter().find(|w| w.id == a.id).unwrap();
    let img = c.screenshot("two-domains-refocus");
    assert_framed(&img, a, WORK, &format!("[work] {}", a.title), true);

    c.action("focus-next", None);
    c.wait_windows("banking focused again", |ws| {
        ws.iter().any(|w| w.domain == "banking" && w.focused)
    });
    c.action("maximize", None);
    // The frame fills the output once the client has drawn at the new size.
    c.wait_windows("banking maximized to the output", |ws| {
        ws.iter().any(|w| {
            w.domain == "banking"
                && w.maximized
                && (w.frame.x, w.frame.y, w.frame.width, w.frame.height) == (0, 0, 1280, 800)
        })
    });
    c.action("close", None);
    c.wait_windows("banking closed", |ws| {
        ws.iter().all(|w| w.domain != "banking")
    });
}

#[test]
fn privileged_globals_are_only_offered_to_the_host() {
    let c = Compositor::start(TWO_VMS);
    const PRIVILEGED: &[&str] = &[
        "zwlr_layer_shell_v1",
        "zwp_virtual_keyboard_manager_v1",
        "wp_security_context_manager_v1",
        "ext_session_lock_manager_v1",
        "zwlr_data_control_manager_v1",
        "ext_data_control_manager_v1",
        "ext_idle_notifier_v1",
        "zwlr_screencopy_manager_v1",
        "ext_image_copy_capture_manager_v1",
        "zwlr_foreign_toplevel_manager_v1",
        "ext_foreign_toplevel_list_v1",
        "zwp_input_method_manager_v2",
        "zwlr_virtual_pointer_manager_v1",
        "zwp_keyboard_shortcuts_inhibit_manager_v1",
        // (zwp_pointer_constraints_v1 is offered to VMs: it holds only in the focused window,
        // pointer_constraints.rs.)
        "zwlr_output_manager_v1",
        "zwlr_output_power_manager_v1",
        "xwayland_shell_v1",
    ];
    let (ok, vm) = c.run("work", "wayland-info", &[]);
    assert!(
        ok && vm.contains("wl_compositor"),
        "wayland-info on the VM socket failed: {vm}"
    );
    for g in PRIVILEGED {
        assert!(!vm.contains(&format!("'{g}'")), "VM client was offered {g}");
    }
    let (ok, host) = c.run("host", "wayland-info", &[]);
    assert!(ok, "wayland-info on the host socket failed");
    for g in [
        "zwlr_layer_shell_v1",
        "zwp_virtual_keyboard_manager_v1",
        "ext_session_lock_manager_v1",
        "wp_security_context_manager_v1",
        "zwlr_data_control_manager_v1",
        "zwlr_screencopy_manager_v1",
        "ext_idle_notifier_v1",
        "zwlr_output_manager_v1",
    ] {
        assert!(
            host.contains(&format!("'{g}'")),
            "host client was not offered {g}"
        );
    }
}

#[test]
fn clipboard_stays_in_its_domain() {
    let c = Compositor::start(TWO_VMS);
    // wl-copy stays alive serving the selection; it sets it from a focused surface.
    let _copy = c.spawn("work", "wl-copy", &["secret-from-work"]);
    // No paste until it is set: wl-paste's own surface would take the focus wl-copy needs.
    c.wait_selection("work", false);
    let paste_in = |domain: &str| c.run(domain, "wl-paste", &["--no-newline"]);
    // Same domain: the text arrives (retry while wl-copy is still starting).
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let (_, out) = paste_in("work");
        if out == "secret-from-work" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "paste inside work never got the text"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // Other domains are never offered it: wl-paste gets nothing (it waits for an offer that
    // never comes, so give it a few seconds only).
    let (ok, out) = c.run_for(4, "banking", "wl-paste", &["--no-newline"]);
    assert!(!ok && out.is_empty(), "banking pasted {out:?}");
    let (_, out) = c.run_for(4, "host", "wl-paste", &["--no-newline"]);
    assert!(out.is_empty(), "host pasted {out:?}");
}

#[test]
fn domains_report_their_sockets_and_clients() {
    let c = Compositor::start(TWO_VMS);
    let _foot = c.spawn("work", "foot", &[]);
    c.wait_window("work", "foot");
    let Reply::Domains(d) = c.request(&bulkhead_ipc::Request::Domains) else {
        panic!()
    };
    let names: Vec<_> = d.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["host", "work", "banking"]);
    let work = &d[1];
    assert_eq!(work.color, "#3060ff");
    assert_eq!(work.socket, c.vm_socket("work"));
    assert_eq!((work.clients, work.windows), (1, 1));
    assert_eq!(d[2].clients, 0);
}

#[test]
fn runs_as_an_unprivileged_user() {
    if !is_root() {
        cannot_run(
            "clients::runs_as_an_unprivileged_user",
            "switching to the user nobody needs root",
        );
        return;
    }
    // nobody:nogroup
    let c = Compositor::start_with(TWO_VMS, Some((65534, 65534)), &[]);
    let _f = c.spawn("work", "foot", &[]);
    let w = c.wait_window("work", "foot");
    let img = c.screenshot("unprivileged");
    assert_framed(&img, &w, WORK, &format!("[work] {}", w.title), true);
}

#[test]
fn weston_terminal_and_a_gtk_app_are_framed() {
    let c = Compositor::start(TWO_VMS);
    let _term = c.spawn("banking", "weston-terminal", &[]);
    let t = c.wait_window("banking", "");
    // GTK3 gets server-side decorations through the KDE protocol, so it draws no shadow;
    // whatever it draws is cropped to its window geometry anyway.
    let _gtk = c.spawn("work", "gtk3-demo", &[]);
    let g = c.wait_window("work", "gtk3-demo");
    c.focus(g.id);
    let ws = c.windows();
    let g = ws.iter().find(|w| w.id == g.id).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let img = c.screenshot("gtk-and-weston-terminal");
    assert_framed(&img, g, WORK, &format!("[work] {}", g.title), true);
    let t = ws.iter().find(|w| w.id == t.id).unwrap();
    // The terminal is partly covered by the GTK window: check the parts of its frame outside.
    let covered = |x: i32, y: i32| g.frame.contains(x, y);
    let f = t.frame;
    for (x, y) in [
        (f.x + 1, f.y + f.height / 2),
        (f.x + f.width - 2, f.y + f.height - 2),
        (f.x + 2, f.y + 2),
    ] {
        if !covered(x, y) {
            assert_eq!(img.pixel(x, y), BANKING, "weston-terminal frame at {x},{y}");
        }
    }
}

#[test]
fn nested_backend_shows_the_same_frames() {
    let x = Xvfb::start();
    let c = Compositor::start_nested(TWO_VMS, &x.display);
    let _foot = c.spawn("work", "foot", &[]);
    let w = c.wait_window("work", "foot");
    // Read back through an offscreen GLES texture (llvmpipe here), rows top-down.
    let img = c.screenshot("nested-winit");
    assert_framed(&img, &w, WORK, &format!("[work] {}", w.title), true);
}

#[test]
fn title_bar_drag_moves_and_super_right_drag_resizes() {
    let c = Compositor::start(TWO_VMS);
    let _foot = c.spawn("work", "foot", &[]);
    let w = c.wait_window("work", "foot");
    let (bx, by) = (w.frame.x + w.frame.width / 2, w.frame.y + 12);
    c.input(vec![
        InputEvent::PointerMotion {
            x: bx as f64,
            y: by as f64,
        },
        InputEvent::PointerButton {
            button: 272,
            pressed: true,
        },
        InputEvent::PointerMotion {
            x: (bx - 100) as f64,
            y: (by + 50) as f64,
        },
        InputEvent::PointerButton {
            button: 272,
            pressed: false,
        },
    ]);
    let moved = c.wait_windows("moved by its title bar", |ws| {
        ws.iter()
            .any(|m| m.id == w.id && m.geometry.x == w.geometry.x - 100)
    });
    let m = moved.iter().find(|m| m.id == w.id).unwrap();
    assert_eq!(
        (m.geometry.y, m.geometry.width),
        (w.geometry.y + 50, w.geometry.width)
    );

    // Super + right button near the bottom-right corner: resize.
    let (px, py) = (
        m.geometry.x + m.geometry.width - 10,
        m.geometry.y + m.geometry.height - 10,
    );
    c.input(super_right_drag((px, py), (px - 200, py - 100)));
    let resized = c.wait_windows("resized", |ws| {
        ws.iter()
            .any(|r| r.id == w.id && r.geometry.width < m.geometry.width - 100)
    });
    let r = resized.iter().find(|r| r.id == w.id).unwrap();
    assert_eq!(
        (r.geometry.x, r.geometry.y),
        (m.geometry.x, m.geometry.y),
        "top-left stays"
    );
}

#[test]
fn alt_tab_through_the_key_path_switches_domains() {
    let c = Compositor::start(TWO_VMS);
    let _a = c.spawn("work", "foot", &[]);
    let a = c.wait_window("work", "foot");
    let _b = c.spawn("banking", "foot", &[]);
    let b = c.wait_window("banking", "foot");
    c.focus(b.id);
    c.input(chord(&[KEY_LEFTALT], KEY_TAB));
    let ws = c.wait_windows("work focused by Alt-Tab", |ws| {
        ws.iter().any(|w| w.id == a.id && w.focused)
    });
    let a = ws.iter().find(|w| w.id == a.id).unwrap();
    let img = c.screenshot("alt-tab");
    assert_framed(&img, a, WORK, &format!("[work] {}", a.title), true);
}

#[test]
fn host_taskbars_see_labelled_windows_and_vms_see_none() {
    let c = Compositor::start(TWO_VMS);
    let _foot = c.spawn("work", "foot", &["-T", "mail"]);
    c.wait_window("work", "foot");
    let seen =
        common::client::foreign_toplevels(&c.host_socket).expect("host binds the toplevel list");
    assert_eq!(seen, vec![("[work] mail".to_string(), "foot".to_string())]);
    assert!(
        common::client::foreign_toplevels(&c.vm_socket("banking")).is_err(),
        "a VM must not list windows"
    );
}

#[test]
fn primary_selection_stays_in_its_domain() {
    let c = Compositor::start(TWO_VMS);
    let _copy = c.spawn("banking", "wl-copy", &["--primary", "iban-DE00"]);
    // wl-copy sets it from a surface of its own, which must have focus: no paste meanwhile.
    c.wait_selection("banking", true);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let (_, out) = c.run("banking", "wl-paste", &["--primary", "--no-newline"]);
        if out == "iban-DE00" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "primary paste inside banking never got the text"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_, out) = c.run_for(4, "work", "wl-paste", &["--primary", "--no-newline"]);
    assert!(
        out.is_empty(),
        "work pasted banking's primary selection: {out:?}"
    );
}

#[test]
fn two_outputs_place_new_windows_under_the_pointer() {
    let config = format!("{TWO_VMS}\n[headless]\noutputs = 2\nwidth = 1024\nheight = 768\n");
    let c = Compositor::start(&config);
    let Reply::Outputs(outs) = c.request(&bulkhead_ipc::Request::Outputs) else {
        panic!()
    };
    assert_eq!(outs.len(), 2);
    assert_eq!((outs[1].geometry.x, outs[1].geometry.width), (1024, 1024));
    // Pointer on the second output: the next window opens there.
    c.input(vec![InputEvent::PointerMotion {
        x: 1500.0,
        y: 400.0,
    }]);
    let _foot = c.spawn("banking", "foot", &[]);
    let w = c.wait_window("banking", "foot");
    assert_eq!(w.output.as_deref(), Some(outs[1].name.as_str()));
    assert!(
        w.frame.x >= 1024 && w.frame.x + w.frame.width <= 2048,
        "{:?}",
        w.frame
    );
    let img = c.screenshot("two-outputs");
    assert_eq!((img.width, img.height), (2048, 768));
    assert_framed(&img, &w, BANKING, &format!("[banking] {}", w.title), true);
}

/// `bulkhead msg clients` lists every client with its domain, the process that connected
/// (from the kernel, not from anything the client says) and how it arrived: here every one
/// is direct, whichever socket it used (a VM's socket alone decides the domain; only the
/// VM's VMM or vsock bridge would make it cross-domain or a bridge stream).
#[test]
fn clients_are_listed_with_their_peer_and_how_they_arrived() {
    use bulkhead_ipc::{Arrival, Request};
    let c = Compositor::start(TWO_VMS);
    let foot = c.spawn("work", "foot", &[]);
    c.wait_window("work", "foot");
    let mut host = common::client::Client::connect(&c.host_socket);
    host.roundtrip();
    let clients = match c.request(&Request::Clients) {
        Reply::Clients(list) => list,
        other => panic!("unexpected reply {other:?}"),
    };
    let in_work: Vec<_> = clients.iter().filter(|x| x.domain == "work").collect();
    assert_eq!(in_work.len(), 1, "{clients:?}");
    let f = in_work[0];
    assert_eq!(f.pid, Some(foot.0.id() as i32), "{f:?}");
    assert_eq!(f.program.as_deref(), Some("foot"), "{f:?}");
    assert_eq!(f.arrival, Arrival::Direct);
    assert_eq!(f.windows, 1);
    assert!(!f.sandboxed);
    let me = std::process::id() as i32;
    let h = clients
        .iter()
        .find(|x| x.domain == "host" && x.pid == Some(me))
        .unwrap_or_else(|| panic!("no host client of pid {me}: {clients:?}"));
    assert_eq!(h.arrival, Arrival::Direct);
    assert_eq!(h.windows, 0);
    assert_eq!(h.uid, Some(nix::unistd::getuid().as_raw()));
    // Gone clients are not listed.
    drop(host);
    drop(foot);
    c.wait_windows("foot gone", |w| w.is_empty());
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let Reply::Clients(list) = c.request(&Request::Clients) else {
            panic!("unexpected reply");
        };
        if list.iter().all(|x| x.pid != Some(me) && x.domain != "work") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gone clients still listed: {list:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
