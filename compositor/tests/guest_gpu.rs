//! Guest graphics on real QEMU guests (TCG): the demo guest (`rootfs/build-guest --profile
//! demo`) over virtio-gpu cross-domain, on the QEMU with virtio-gpu-rutabaga that
//! `.ci/install-deps` builds, and over the vsock stream; and a hostile guest program that
//! drives its virtio-gpu directly.

mod common;

use std::path::Path;
use std::time::Duration;

use bulkhead_ipc::VmState;
use common::vms::*;
use common::*;

/// How the demo guest's Wayland reaches its VM's socket.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Transport {
    /// QEMU's virtio-gpu-rutabaga (built by .ci/install-deps): the guest proxy drives the
    /// guest kernel's virtio-gpu, QEMU connects to the VM's socket.
    CrossDomain,
    /// The guest proxy's stream over vsock, bulkhead-wl-bridge on the VM's socket.
    Vsock,
}

/// The demo guest (`rootfs/build-guest --profile demo`): a Debian root on the generic kernel
/// with foot, weston's demos and wl-clipboard, bulkhead-wl-proxy started at boot on
/// `--transport auto`. Its app's pixels arrive in the VM's frame, foot takes typed text,
/// copy and paste work inside the domain and never reach another; the client list says how
/// the app arrived.
fn a_guest_app_shows_its_window_framed_in_its_vm_colour(transport: Transport) {
    let g = demo_guest();
    if transport == Transport::CrossDomain {
        assert!(
            Path::new(bulkhead_vmm::plan::RUTABAGA_QEMU).exists(),
            "no QEMU with virtio-gpu-rutabaga at {}: run .ci/install-deps",
            bulkhead_vmm::plan::RUTABAGA_QEMU
        );
    }
    let purple = [0x9b, 0x59, 0xb6];
    let gpu = match transport {
        // The kernel's info messages on the console: virtio-gpu's features.
        Transport::CrossDomain => "kernel-params = [\"loglevel=7\"]\n",
        Transport::Vsock => "gpu = { transport = \"vsock\" }\n",
    };
    let cfg = config(&format!(
        "{}{gpu}{}",
        debian_vm("demo", "#9b59b6", &g, "256M"),
        debian_vm("banking", "#2ecc71", &g, "256M")
    ));
    let c = Compositor::start(&cfg);
    let (code, _, err) = c.vm_cli("vm-run", &["demo", "weston-simple-shm"]);
    assert_eq!(code, 0, "{err}");
    let w = c.wait_window("demo", "simple-shm");
    // How it came (the peer of its connection, from the kernel): QEMU itself, or the VM's
    // vsock bridge.
    let clients = match c.request(&bulkhead_ipc::Request::Clients) {
        bulkhead_ipc::Reply::Clients(list) => list,
        other => panic!("unexpected reply {other:?}"),
    };
    let shm = clients
        .iter()
        .find(|x| x.domain == "demo" && x.windows == 1)
        .unwrap_or_else(|| panic!("no demo client with a window: {clients:?}"));
    let (arrival, program) = match transport {
        Transport::CrossDomain => (bulkhead_ipc::Arrival::CrossDomain, "qemu-system-x86"),
        Transport::Vsock => (bulkhead_ipc::Arrival::VsockBridge, "bulkhead-wl-bri"),
    };
    assert_eq!(shm.arrival, arrival, "{shm:?}");
    assert_eq!(shm.program.as_deref(), Some(program), "{shm:?}");
    if transport == Transport::CrossDomain {
        // The guest kernel drove a GPU with blobs and context init (its console log).
        let console = c.dir.path().join("state/bulkhead/vms/demo/console.log");
        let log = std::fs::read_to_string(&console).expect("the demo VM's console log");
        // "[drm] features: +virgl +edid +resource_blob +host_visible", then "+context_init".
        let features: String = log
            .lines()
            .filter(|l| l.contains("[drm] features:"))
            .collect::<Vec<_>>()
            .join(" ");
        for f in ["+resource_blob", "+host_visible", "+context_init"] {
            assert!(features.contains(f), "{f} missing: {features}");
        }
    }
    std::thread::sleep(Duration::from_millis(1000));
    let img = c.screenshot(&format!("vm-demo-simple-shm-{transport:?}"));
    assert_framed(&img, &w, purple, &format!("[demo] {}", w.title), true);
    let colours = img.distinct_colours(w.geometry);
    assert!(
        colours > 50,
        "the guest's pixels did not arrive ({colours} colours)"
    );

    // foot in the guest takes typed text: it lands in the home, which the host can read.
    let (code, _, err) = c.vm_cli(
        "vm-run",
        &[
            "demo",
            "foot",
            "sh",
            "-c",
            "read line; echo \"$line\" > ~/typed",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let f = c.wait_window("demo", "foot");
    c.wait_windows("foot focused", |ws| {
        ws.iter().any(|x| x.id == f.id && x.focused)
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut keys = Vec::new();
    for code in [35, 23, 28] {
        keys.extend(chord(&[], code)); // h, i, Enter
    }
    c.input(keys);
    let typed = c.dir.path().join("data/bulkhead/vms/demo/home/typed");
    wait_until("the typed line in the guest's home", 60, || {
        std::fs::read_to_string(&typed).is_ok_and(|s| s == "hi\n")
    });

    // Copy and paste inside the guest: the data crosses the transport's pipes both ways.
    let (code, _, err) = c.vm_cli("vm-run", &["demo", "wl-copy", "inside-the-vm"]);
    assert_eq!(code, 0, "{err}");
    c.wait_selection("demo", false);
    wait_until("the paste in the guest", 60, || {
        let (code, out, _) = c.vm_cli("vm-run", &["--wait", "demo", "wl-paste", "--no-newline"]);
        code == 0 && out == "inside-the-vm"
    });
    // Another domain never sees it.
    let (_, out) = c.run_for(4, "banking", "wl-paste", &["--no-newline"]);
    assert_ne!(out, "inside-the-vm");

    stop(&c, "demo");
    c.wait_windows("the VM's windows to go", |ws| {
        ws.iter().all(|w| w.domain != "demo")
    });
}

#[test]
fn a_guest_app_shows_its_window_framed_in_its_vm_colour_over_cross_domain() {
    a_guest_app_shows_its_window_framed_in_its_vm_colour(Transport::CrossDomain);
}

#[test]
fn a_guest_app_shows_its_window_framed_in_its_vm_colour_over_vsock() {
    a_guest_app_shows_its_window_framed_in_its_vm_colour(Transport::Vsock);
}

/// A hostile program in a cross-domain guest drives the virtio-gpu device directly through
/// the guest kernel's DRM uAPI (guest-proxy/examples/gpu-hostile.rs: unknown and truncated
/// commands, bad ring indexes, bogus identifiers, oversized and many blobs, many contexts,
/// random commands). At worst its own VM goes; the compositor, another running VM and
/// another domain's window are untouched, and the VM's domain can show windows again.
#[test]
fn a_guest_driving_its_gpu_with_garbage_harms_nothing_outside_its_vm() {
    let g = demo_guest();
    assert!(
        Path::new(bulkhead_vmm::plan::RUTABAGA_QEMU).exists(),
        "no QEMU with virtio-gpu-rutabaga at {}: run .ci/install-deps",
        bulkhead_vmm::plan::RUTABAGA_QEMU
    );
    let hostile = workspace_binary("bulkhead").with_file_name("examples");
    assert!(
        hostile.join("gpu-hostile").exists(),
        "no gpu-hostile in {}: cargo build -p bulkhead-guest --examples",
        hostile.display()
    );
    // The program reaches the guest through a read-only share of the examples dir.
    let tools = format!(
        "[[vm.share]]\ntag = \"tools\"\npath = \"{}\"\nmount = \"/opt/tools\"\nread-only = true\n",
        hostile.display()
    );
    let cfg = config(&format!(
        "{}{tools}{}{}",
        debian_vm("demo", "#9b59b6", &g, "256M"),
        vm("other", ""),
        debian_vm("banking", "#2ecc71", &g, "256M"),
    ));
    let c = Compositor::start(&cfg);
    run_ok(&c, "other", &["true"]);
    let (code, _, err) = c.vm_cli("vm-run", &["demo", "weston-simple-shm"]);
    assert_eq!(code, 0, "{err}");
    c.wait_window("demo", "simple-shm");
    // Another domain's window, from the host.
    let _banking = c.spawn("banking", "weston-simple-shm", &[]);
    let b = c.wait_window("banking", "simple-shm");
    let qemu = vmm_pid(&c, "demo");

    let (code, out, err) = c.vm_cli(
        "vm-run",
        &["--wait", "demo", "timeout", "600", "/opt/tools/gpu-hostile"],
    );
    eprintln!("gpu-hostile: exit {code}\n{out}\n{err}");
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(qemu), None).is_ok();
    if code == 0 {
        // It ran every attack (the VM survived them all).
        assert!(out.lines().any(|l| l == "done"), "{out}");
        assert!(out.contains("attack many-contexts"), "{out}");
    } else {
        // Its VM went: QEMU ended (no hung VMM), and the manager noticed.
        wait_until("the hostile VM's QEMU to end", 60, || {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(qemu), None).is_err()
        });
        wait_until("the hostile VM stopped", 60, || {
            state_of(&c, "demo").state == VmState::Stopped
        });
    }
    eprintln!("the hostile VM's QEMU alive after the attacks: {alive}");

    // The compositor answers, the other VM runs commands, banking's window is still there
    // and still drawn (its pixels change between two screenshots).
    run_ok(&c, "other", &["true"]);
    let ws = c.windows();
    assert!(
        ws.iter().any(|w| w.id == b.id),
        "banking's window went: {ws:?}"
    );
    let first = c.screenshot("gpu-hostile-after-1");
    std::thread::sleep(Duration::from_millis(500));
    let second = c.screenshot("gpu-hostile-after-2");
    let g = b.geometry;
    let changed = (g.y..g.y + g.height)
        .step_by(7)
        .flat_map(|y| (g.x..g.x + g.width).step_by(7).map(move |x| (x, y)))
        .filter(|&(x, y)| first.pixel(x, y) != second.pixel(x, y))
        .count();
    assert!(
        changed > 10,
        "banking's window stopped drawing ({changed} pixels changed)"
    );

    // The demo domain shows windows again (booted anew if its VM went).
    let (code, _, err) = c.vm_cli("vm-run", &["demo", "weston-simple-shm"]);
    assert_eq!(code, 0, "{err}");
    c.wait_windows("a new demo window", |ws| {
        ws.iter()
            .filter(|w| w.domain == "demo" && w.title.contains("simple-shm"))
            .count()
            >= 1
    });
    stop(&c, "demo");
    stop(&c, "other");
}
