//! Every kind of object a VM client can make is capped, per client and per domain, and so are
//! the costs that are not objects (threat model, promise 4; `bulkhead_compositor::limits`).
//! Each test is a raw-wire VM client (wayland-client, no toolkit) that goes one past a limit:
//! it is disconnected, the user is told which VM and which limit in the compositor's own
//! notification (checked by pixel), and a client of the other domain still gets a new frame.

mod common;

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use bulkhead_compositor::limits::{self, per_client};
use common::client::{Client, Toplevel, WHITE};
use common::*;
use wayland_client::protocol::{wl_shm, wl_surface};
use wayland_protocols::wp::idle_inhibit::zv1::client::zwp_idle_inhibit_manager_v1::ZwpIdleInhibitManagerV1;
use wayland_protocols::wp::presentation_time::client::wp_presentation::WpPresentation;
use wayland_protocols::xdg::activation::v1::client::{
    xdg_activation_token_v1::XdgActivationTokenV1, xdg_activation_v1::XdgActivationV1,
};

wayland_client::delegate_noop!(common::client::Events: ignore XdgActivationV1);
wayland_client::delegate_noop!(common::client::Events: ignore XdgActivationTokenV1);

/// A banking window that must keep getting frames while work misbehaves.
struct Witness {
    client: Client,
    window: Toplevel,
}

impl Witness {
    fn new(c: &Compositor) -> Witness {
        let mut client = Client::connect(&c.vm_socket("banking"));
        let window = client.toplevel("witness");
        client.map(&window, 200, 120, WHITE);
        c.wait_window("banking", "witness");
        Witness { client, window }
    }

    /// A new frame: a commit with damage is answered by the frame callback it asked for.
    fn gets_a_frame(&mut self) {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let callback = self
            .window
            .surface
            .frame(&self.client.qh, FrameDone(done.clone()));
        let buf = self.client.buffer(200, 120, [0x20, 0x80, 0x40]);
        self.window.surface.attach(Some(&buf), 0, 0);
        self.window.surface.damage_buffer(0, 0, 200, 120);
        self.window.surface.commit();
        let deadline = Instant::now() + TIMEOUT;
        while !done.load(std::sync::atomic::Ordering::Relaxed) {
            assert!(Instant::now() < deadline, "the other domain got no frame");
            self.client
                .try_roundtrip()
                .expect("the other domain's client was disconnected");
        }
        drop(callback);
    }
}

/// User data of a frame callback: set when it is done.
struct FrameDone(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl wayland_client::Dispatch<wayland_client::protocol::wl_callback::WlCallback, FrameDone>
    for common::client::Events
{
    fn event(
        _: &mut Self,
        _: &wayland_client::protocol::wl_callback::WlCallback,
        _: wayland_client::protocol::wl_callback::Event,
        done: &FrameDone,
        _: &wayland_client::Connection,
        _: &wayland_client::QueueHandle<Self>,
    ) {
        done.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits until the compositor has disconnected `client`.
fn disconnected(client: &mut Client) {
    let deadline = Instant::now() + TIMEOUT;
    while client.try_roundtrip().is_ok() {
        assert!(
            Instant::now() < deadline,
            "the client over the limit is still connected"
        );
    }
}

/// A work client does `flood`, which goes one past a limit: it is disconnected, the
/// notification names work and `why`, and banking still gets frames.
fn over_limit(why: &str, flood: impl FnOnce(&Compositor, &mut Client)) {
    let mut c = Compositor::start(TWO_VMS);
    let mut witness = Witness::new(&c);
    let mut bad = Client::connect(&c.vm_socket("work"));
    flood(&c, &mut bad);
    disconnected(&mut bad);
    notified(&c, WORK, &format!("[work] app disconnected: {why}"));
    witness.gets_a_frame();
    assert!(c.running());
}

/// "more than N wl_x objects".
fn too_many(interface: &str) -> String {
    format!("more than {} {interface} objects", per_client(interface))
}

#[test]
fn surfaces() {
    over_limit(&too_many("wl_surface"), |_, cl| {
        for _ in 0..=per_client("wl_surface") {
            cl.surface();
        }
    });
}

#[test]
fn regions() {
    over_limit(&too_many("wl_region"), |_, cl| {
        for _ in 0..=per_client("wl_region") {
            cl.compositor.create_region(&cl.qh, ());
        }
    });
}

#[test]
fn frame_callbacks() {
    over_limit(&too_many("wl_callback"), |_, cl| {
        let s = cl.surface();
        for _ in 0..=per_client("wl_callback") {
            s.frame(&cl.qh, ());
        }
    });
}

#[test]
fn shm_pools() {
    over_limit(&too_many("wl_shm_pool"), |_, cl| {
        let file = tempfile::tempfile().unwrap();
        file.set_len(4096).unwrap();
        for _ in 0..=per_client("wl_shm_pool") {
            cl.shm.create_pool(file.as_fd(), 4096, &cl.qh, ());
        }
    });
}

#[test]
fn shm_pools_kept_alive_by_their_buffers() {
    // The pool objects are destroyed at once; their buffers keep each mapping (and fd).
    let why = format!(
        "more than {} shared memory pools",
        limits::SHM_POOLS_PER_CLIENT
    );
    over_limit(&why, |_, cl| {
        let file = tempfile::tempfile().unwrap();
        file.set_len(4096).unwrap();
        for _ in 0..=limits::SHM_POOLS_PER_CLIENT {
            let pool = cl.shm.create_pool(file.as_fd(), 4096, &cl.qh, ());
            pool.create_buffer(0, 16, 16, 64, wl_shm::Format::Argb8888, &cl.qh, ());
            pool.destroy();
        }
    });
}

/// Pools of 1 GiB (mapped, never touched) until `bytes` are mapped.
fn gib_pools(cl: &Client, bytes: usize) {
    let file = tempfile::tempfile().unwrap();
    for _ in 0..bytes >> 30 {
        cl.shm.create_pool(file.as_fd(), 1 << 30, &cl.qh, ());
    }
}

#[test]
fn shm_bytes_of_a_client() {
    let why = format!(
        "more than {} MiB of shared memory",
        limits::SHM_BYTES_PER_CLIENT >> 20
    );
    over_limit(&why, |_, cl| {
        gib_pools(cl, limits::SHM_BYTES_PER_CLIENT - (1 << 30));
        // The last GiB by growing a pool, then one page more.
        let file = tempfile::tempfile().unwrap();
        let pool = cl.shm.create_pool(file.as_fd(), 1 << 29, &cl.qh, ());
        pool.resize(1 << 30);
        pool.resize((1 << 30) + 4096);
    });
}

#[test]
fn shm_bytes_of_a_domain() {
    let why = format!(
        "its VM maps more than {} MiB of shared memory",
        limits::SHM_BYTES_PER_DOMAIN >> 20
    );
    over_limit(&why, |c, cl| {
        let mut others = Vec::new();
        for _ in 0..limits::SHM_BYTES_PER_DOMAIN / limits::SHM_BYTES_PER_CLIENT {
            let mut other = Client::connect(&c.vm_socket("work"));
            gib_pools(&other, limits::SHM_BYTES_PER_CLIENT);
            other.roundtrip();
            others.push(other);
        }
        let file = tempfile::tempfile().unwrap();
        cl.shm.create_pool(file.as_fd(), 4096, &cl.qh, ());
        // While the others still hold theirs.
        let _ = cl.try_roundtrip();
        drop(others);
    });
}

#[test]
fn buffers() {
    over_limit(&too_many("wl_buffer"), |_, cl| {
        let file = tempfile::tempfile().unwrap();
        file.set_len(4096).unwrap();
        let pool = cl.shm.create_pool(file.as_fd(), 4096, &cl.qh, ());
        for _ in 0..=per_client("wl_buffer") {
            pool.create_buffer(0, 16, 16, 64, wl_shm::Format::Argb8888, &cl.qh, ());
        }
    });
}

#[test]
fn popups() {
    over_limit(&too_many("xdg_popup"), |_, cl| {
        let parent = cl.toplevel("parent");
        let positioner = cl.wm_base.create_positioner(&cl.qh, ());
        positioner.set_size(10, 10);
        positioner.set_anchor_rect(0, 0, 1, 1);
        for _ in 0..=per_client("xdg_popup") {
            let s = cl.surface();
            let xdg = cl.wm_base.get_xdg_surface(&s, &cl.qh, ());
            xdg.get_popup(Some(&parent.xdg), &positioner, &cl.qh, ());
        }
    });
}

#[test]
fn positioners() {
    over_limit(&too_many("xdg_positioner"), |_, cl| {
        for _ in 0..=per_client("xdg_positioner") {
            cl.wm_base.create_positioner(&cl.qh, ());
        }
    });
}

#[test]
fn activation_tokens() {
    over_limit(&too_many("xdg_activation_token_v1"), |_, cl| {
        let activation: XdgActivationV1 = cl.bind(1);
        for _ in 0..=per_client("xdg_activation_token_v1") {
            activation.get_activation_token(&cl.qh, ());
        }
    });
}

#[test]
fn data_sources() {
    over_limit(&too_many("wl_data_source"), |_, cl| {
        for _ in 0..=per_client("wl_data_source") {
            cl.ddm.create_data_source(&cl.qh, ());
        }
    });
}

#[test]
fn mime_types_of_a_source() {
    let why = format!(
        "more than {} MIME types on one data source",
        limits::MIME_TYPES_PER_SOURCE
    );
    over_limit(&why, |_, cl| {
        let source = cl.ddm.create_data_source(&cl.qh, ());
        for i in 0..=limits::MIME_TYPES_PER_SOURCE {
            source.offer(format!("application/x-flood-{i}"));
        }
    });
}

#[test]
fn data_offers() {
    // Offers are made by the compositor: one per data device each time the selection
    // changes. A client with many devices and the keyboard gets one offer per device.
    over_limit(&too_many("wl_data_offer"), |c, cl| {
        let t = cl.toplevel("offers");
        cl.map(&t, 100, 100, WHITE);
        c.focus(c.wait_window("work", "offers").id);
        let devices: Vec<_> = (0..=per_client("wl_data_offer"))
            .map(|_| cl.ddm.get_data_device(&cl.seat, &cl.qh, ()))
            .collect();
        let source = cl.ddm.create_data_source(&cl.qh, ());
        source.offer("text/plain".into());
        devices[0].set_selection(Some(&source), 0);
    });
}

#[test]
fn idle_inhibitors() {
    over_limit(&too_many("zwp_idle_inhibitor_v1"), |_, cl| {
        let manager: ZwpIdleInhibitManagerV1 = cl.bind(1);
        let s = cl.surface();
        for _ in 0..=per_client("zwp_idle_inhibitor_v1") {
            manager.create_inhibitor(&s, &cl.qh, ());
        }
    });
}

#[test]
fn presentation_feedbacks() {
    over_limit(&too_many("wp_presentation_feedback"), |_, cl| {
        let presentation: WpPresentation = cl.bind(1);
        let s = cl.surface();
        for _ in 0..=per_client("wp_presentation_feedback") {
            presentation.feedback(&s, &cl.qh, ());
        }
    });
}

#[test]
fn interfaces_not_listed_get_the_default_limit() {
    // wl_data_device is not in the table.
    over_limit(&too_many("wl_data_device"), |_, cl| {
        assert_eq!(per_client("wl_data_device"), limits::DEFAULT_PER_CLIENT);
        for _ in 0..=limits::DEFAULT_PER_CLIENT {
            cl.ddm.get_data_device(&cl.seat, &cl.qh, ());
        }
    });
}

#[test]
fn objects_of_a_client_in_total() {
    let why = format!("more than {} objects", limits::TOTAL_PER_CLIENT);
    over_limit(&why, |_, cl| {
        // One less than each interface's own limit, of enough interfaces to pass the total.
        let under = |interface: &str| per_client(interface) - 1;
        let presentation: WpPresentation = cl.bind(1);
        let file = tempfile::tempfile().unwrap();
        file.set_len(4096).unwrap();
        let pool = cl.shm.create_pool(file.as_fd(), 4096, &cl.qh, ());
        let surfaces: Vec<_> = (0..under("wl_surface")).map(|_| cl.surface()).collect();
        let (parent, rest) = surfaces.split_first().unwrap();
        let (with_xdg, with_sub) = rest.split_at(under("xdg_surface"));
        for s in with_xdg {
            cl.wm_base.get_xdg_surface(s, &cl.qh, ());
        }
        for s in with_sub.iter().take(under("wl_subsurface")) {
            cl.subcompositor.get_subsurface(s, parent, &cl.qh, ());
        }
        let _ = cl.try_roundtrip();
        for _ in 0..under("wl_callback") {
            parent.frame(&cl.qh, ());
        }
        let _ = cl.try_roundtrip();
        for _ in 0..under("wp_presentation_feedback") {
            presentation.feedback(parent, &cl.qh, ());
        }
        let _ = cl.try_roundtrip();
        for _ in 0..under("wl_buffer") {
            pool.create_buffer(0, 16, 16, 64, wl_shm::Format::Argb8888, &cl.qh, ());
        }
        // Between kinds: the socket takes only so many requests at once.
        let _ = cl.try_roundtrip();
        for _ in 0..under("wl_region") {
            cl.compositor.create_region(&cl.qh, ());
        }
        let _ = cl.try_roundtrip();
        for _ in 0..under("xdg_positioner") {
            cl.wm_base.create_positioner(&cl.qh, ());
        }
        let _ = cl.try_roundtrip();
        for _ in 0..under("wl_data_device") {
            cl.ddm.get_data_device(&cl.seat, &cl.qh, ());
        }
        let _ = cl.try_roundtrip();
        for _ in 0..under("wl_pointer") {
            cl.seat.get_pointer(&cl.qh, ());
        }
        let _ = cl.try_roundtrip();
        for _ in 0..under("wl_touch") {
            cl.seat.get_touch(&cl.qh, ());
        }
    });
}

#[test]
fn objects_of_a_domain_across_its_clients() {
    let limit = per_client("wl_surface") * limits::DOMAIN_FACTOR;
    let why = format!("its VM holds more than {limit} wl_surface objects");
    over_limit(&why, |c, cl| {
        let mut others = Vec::new();
        for _ in 0..limits::DOMAIN_FACTOR {
            let mut other = Client::connect(&c.vm_socket("work"));
            let surfaces: Vec<wl_surface::WlSurface> = (0..per_client("wl_surface"))
                .map(|_| other.surface())
                .collect();
            other.roundtrip();
            others.push((other, surfaces));
        }
        cl.surface();
        let _ = cl.try_roundtrip();
        // The clients under their own limits stay.
        for (other, _) in &mut others {
            other.roundtrip();
        }
    });
}

#[test]
fn rectangles_in_a_region() {
    let why = format!(
        "more than {} rectangles in one region",
        limits::RECTS_PER_REGION
    );
    over_limit(&why, |_, cl| {
        let region = cl.compositor.create_region(&cl.qh, ());
        for i in 0..=limits::RECTS_PER_REGION as i32 {
            region.add(i, i, 1, 1);
        }
    });
}

#[test]
fn damage_rectangles_between_commits() {
    let why = format!(
        "more than {} rectangles in one surface's damage",
        limits::RECTS_PER_REGION
    );
    over_limit(&why, |_, cl| {
        let s = cl.surface();
        for i in 0..=limits::RECTS_PER_REGION as i32 {
            s.damage_buffer(i, i, 1, 1);
        }
    });
}

#[test]
fn clients_per_vm_socket() {
    let c = Compositor::start(TWO_VMS);
    let mut witness = Witness::new(&c);
    let mut apps: Vec<Client> = (0..limits::CLIENTS_PER_VM)
        .map(|_| Client::connect(&c.vm_socket("work")))
        .collect();
    // One more connection is closed at once.
    let mut extra = std::os::unix::net::UnixStream::connect(c.vm_socket("work")).unwrap();
    extra.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut byte = [0u8; 1];
    let n = std::io::Read::read(&mut extra, &mut byte);
    assert!(
        matches!(n, Ok(0)),
        "the connection over the limit was served ({n:?})"
    );
    notified(
        &c,
        WORK,
        &format!(
            "[work] refused 1 connection: more than {} apps",
            limits::CLIENTS_PER_VM
        ),
    );
    witness.gets_a_frame();
    for app in &mut apps {
        app.roundtrip();
    }
    // When one leaves, a new one is served.
    drop(apps.pop());
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let stream = std::os::unix::net::UnixStream::connect(c.vm_socket("work")).unwrap();
        let conn = wayland_client::Connection::from_socket(stream).unwrap();
        if conn.roundtrip().is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no room after an app left");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The compositor's open file descriptors.
fn open_fds(c: &Compositor) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", c.pid()))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn fds_queued_on_requests_that_take_none() {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let c = Compositor::start(TWO_VMS);
    let mut witness = Witness::new(&c);
    let before = open_fds(&c);
    // Raw wire: wl_display.sync (no fd argument), each with 28 fds attached.
    let stream = std::os::unix::net::UnixStream::connect(c.vm_socket("work")).unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let fds = [std::os::fd::AsRawFd::as_raw_fd(&null); 28];
    let mut sent = 0;
    let mut refused = false;
    for new_id in 2u32..2 + 10_000 / 28 + 1 {
        let msg = sync_request(new_id);
        let iov = [std::io::IoSlice::new(&msg)];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        match sendmsg::<()>(
            std::os::fd::AsRawFd::as_raw_fd(&stream),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(_) => sent += fds.len(),
            Err(_) => {
                refused = true;
                break;
            }
        }
    }
    assert!(sent >= 10_000 || refused, "sent {sent} fds");
    // The compositor closes the connection: reading it ends.
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut &stream, &mut sink);
    notified(
        &c,
        WORK,
        &format!(
            "[work] app disconnected: more than {} file descriptors queued",
            limits::FDS_QUEUED_PER_CLIENT
        ),
    );
    let after = open_fds(&c);
    assert!(
        after <= before + 8,
        "the compositor holds {after} fds, {before} before the flood"
    );
    witness.gets_a_frame();
    // A host client still connects.
    let mut host = Client::connect(&c.host_socket);
    host.roundtrip();
}

/// wl_display.sync with callback id `new_id`, on the wire.
fn sync_request(new_id: u32) -> Vec<u8> {
    let mut msg = Vec::with_capacity(12);
    msg.extend_from_slice(&1u32.to_ne_bytes());
    msg.extend_from_slice(&(12u32 << 16).to_ne_bytes());
    msg.extend_from_slice(&new_id.to_ne_bytes());
    msg
}

/// CPU time the compositor has used, in clock ticks.
fn cpu_ticks(c: &Compositor) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", c.pid())).unwrap_or_default();
    // After the command name, in parentheses: fields 14 and 15 are utime and stime.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    tick(11) + tick(12)
}

#[test]
fn accepting_backs_off_when_the_compositor_is_out_of_fds() {
    // With 200 fds the compositor runs out after some connections; it must neither spin nor
    // die, and must serve again once clients leave.
    let mut c = Compositor::start_with_fd_limit(TWO_VMS, 200);
    // Host clients connect one at a time; each is either served (its wl_display.sync is
    // answered) or refused for lack of fds (the log says so). No IPC request here: once fds
    // run out, its connection too would wait in the backlog.
    let mut held = Vec::new();
    let refused = || c.log_text().contains("cannot accept a client");
    while !refused() {
        assert!(held.len() < 200, "the compositor never ran out of fds");
        let stream = std::os::unix::net::UnixStream::connect(&c.host_socket).unwrap();
        std::io::Write::write_all(&mut &stream, &sync_request(2)).unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let mut fds = [nix::poll::PollFd::new(
                stream.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, 50u16).unwrap_or(0) > 0 || refused() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the compositor neither served nor refused a client"
            );
        }
        held.push(stream);
    }
    assert!(c.running(), "the compositor died out of fds");
    // More connections wait in the backlog while the compositor cannot take them.
    for _ in 0..5 {
        held.push(std::os::unix::net::UnixStream::connect(&c.host_socket).unwrap());
    }
    // Over a second, a spinning accept would use the whole second of CPU.
    let (start, ticks) = (Instant::now(), cpu_ticks(&c));
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(&c) - ticks;
    let hz = 100; // USER_HZ on Linux
    let wall = start.elapsed().as_millis() as u64;
    assert!(c.running(), "the compositor died out of fds");
    assert!(
        used * 1000 / hz < wall / 2,
        "the compositor used {} ms of CPU in {wall} ms while out of fds",
        used * 1000 / hz
    );
    assert!(
        c.log_text().contains("cannot accept a client"),
        "the compositor never said it could not accept"
    );
    drop(held);
    // Once the clients have gone, a new one is served (its roundtrip bounded: a compositor that
    // never accepted again would otherwise leave it waiting).
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let stream = std::os::unix::net::UnixStream::connect(&c.host_socket).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let conn = wayland_client::Connection::from_socket(stream).unwrap();
        if conn.roundtrip().is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no client is served after fds came back"
        );
    }
}

/// The compositor's threads.
fn threads(c: &Compositor) -> usize {
    std::fs::read_to_string(format!("/proc/{}/status", c.pid()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

#[test]
fn pastes_nobody_reads_take_no_thread_and_no_copy_each() {
    use bulkhead_compositor::clipboard::MAX_PASTE_WRITERS;
    const KEY_LEFTCTRL: u32 = 29;
    const KEY_LEFTSHIFT: u32 = 42;
    let c = Compositor::start(TWO_VMS);
    // 1 MiB copied from work into the global clipboard, then pasted into banking.
    let data = c.dir.path().join("big");
    std::fs::write(&data, vec![b'x'; 1 << 20]).unwrap();
    let mut work = Client::connect(&c.vm_socket("work"));
    let wt = work.toplevel("source");
    work.map(&wt, 120, 80, WHITE);
    let mut bank = Client::connect(&c.vm_socket("banking"));
    let bt = bank.toplevel("reader");
    bank.map(&bt, 120, 80, WHITE);
    c.focus(c.wait_window("work", "source").id);
    let _copy = c.spawn(
        "work",
        "sh",
        &[
            "-c",
            &format!("exec wl-copy --foreground < {}", data.display()),
        ],
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(bulkhead_ipc::Response::Ok(bulkhead_ipc::Reply::Clipboard {
            selection_domain: Some(d),
            ..
        })) = c.try_request(&bulkhead_ipc::Request::Clipboard)
        {
            if d == "work" {
                break;
            }
        }
        assert!(Instant::now() < deadline, "work never owned a selection");
        std::thread::sleep(Duration::from_millis(50));
    }
    c.input(chord(&[KEY_LEFTCTRL, KEY_LEFTSHIFT], 46));
    let deadline = Instant::now() + TIMEOUT;
    while !matches!(
        c.try_request(&bulkhead_ipc::Request::Clipboard),
        Ok(bulkhead_ipc::Response::Ok(bulkhead_ipc::Reply::Clipboard {
            global: Some(_),
            ..
        }))
    ) {
        assert!(
            Instant::now() < deadline,
            "the copy never reached the global clipboard"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.focus(c.wait_window("banking", "reader").id);
    let _keyboard = bank.keyboard();
    let _device = bank.ddm.get_data_device(&bank.seat, &bank.qh, ());
    bank.roundtrip();
    c.input(chord(&[KEY_LEFTCTRL, KEY_LEFTSHIFT], 47));
    let deadline = Instant::now() + TIMEOUT;
    while bank.events.selection.is_none() {
        assert!(Instant::now() < deadline, "banking was offered no paste");
        bank.roundtrip();
    }
    let offer = bank.events.selection.clone().unwrap();
    use std::os::fd::AsRawFd;
    let before = threads(&c);
    // Many requests, each with a pipe nobody reads: the first ones are written as the pipes
    // take data, the rest get nothing.
    let mut readers = Vec::new();
    for _ in 0..4 * MAX_PASTE_WRITERS {
        let (r, w) = nix::unistd::pipe().unwrap();
        offer.receive("text/plain;charset=utf-8".into(), w.as_fd());
        drop(w);
        readers.push(r);
    }
    bank.roundtrip();
    let _ = c.screenshot("pastes");
    let during = threads(&c);
    assert!(
        during <= before + 1,
        "{during} threads while {} pastes wait, {before} before",
        readers.len()
    );
    // Requests beyond the bound were closed at once: their readers see the end.
    let ended = readers
        .iter()
        .filter(|r| {
            let mut buf = [0u8; 1];
            let fl = nix::fcntl::fcntl(r.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
            let _ = nix::fcntl::fcntl(
                r.as_raw_fd(),
                nix::fcntl::FcntlArg::F_SETFL(
                    nix::fcntl::OFlag::from_bits_truncate(fl) | nix::fcntl::OFlag::O_NONBLOCK,
                ),
            );
            matches!(nix::unistd::read(r.as_raw_fd(), &mut buf), Ok(0))
        })
        .count();
    assert!(
        ended >= readers.len() - MAX_PASTE_WRITERS,
        "only {ended} of {} paste requests beyond the bound were refused",
        readers.len()
    );
    // One reader reads it all: the paste works.
    drop(readers);
    let (r, w) = nix::unistd::pipe().unwrap();
    offer.receive("text/plain;charset=utf-8".into(), w.as_fd());
    drop(w);
    bank.roundtrip();
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(r), &mut got).unwrap();
    assert_eq!(got.len(), 1 << 20);
}

#[test]
fn a_vm_cannot_push_other_notifications_off_the_screen() {
    let c = Compositor::start(TWO_VMS);
    // A host app breaks the protocol: the host's notice.
    let mut host = Client::connect(&c.host_socket);
    let t = host.toplevel("host");
    t.surface.attach(Some(&host.buffer(10, 10, WHITE)), 5, 5);
    t.surface.commit();
    let _ = host.try_roundtrip();
    let host_notice = "app disconnected: protocol error (wl_surface)";
    let deadline = Instant::now() + TIMEOUT;
    let host_color = loop {
        // In the host's colour, whatever the config's default: the strip's.
        let img = c.screenshot("host-notice");
        let x0 = img.width as i32
            - bulkhead_compositor::notify::WIDTH
            - bulkhead_compositor::notify::MARGIN;
        let strip = img.pixel(x0 + 1, bulkhead_compositor::notify::MARGIN + 1);
        if notification_diff(&img, 0, strip, host_notice) == 0 {
            break strip;
        }
        assert!(Instant::now() < deadline, "no host notice");
        std::thread::sleep(Duration::from_millis(50));
    };
    // Work floods: 30 apps, each disconnected for a protocol error.
    for _ in 0..30 {
        let mut bad = Client::connect(&c.vm_socket("work"));
        let s = bad.surface();
        s.attach(Some(&bad.buffer(10, 10, WHITE)), 5, 5);
        s.commit();
        let _ = bad.try_roundtrip();
    }
    // Banking has one thing to say too.
    let mut other = Client::connect(&c.vm_socket("banking"));
    let s = other.surface();
    s.attach(Some(&other.buffer(10, 10, WHITE)), 5, 5);
    s.commit();
    let _ = other.try_roundtrip();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let img = c.screenshot("vm-notice-flood");
        let shown = [
            notification_diff(&img, 0, BANKING, &format!("[banking] {host_notice}")),
            notification_diff(&img, 1, WORK, &format!("[work] {host_notice}")),
            notification_diff(&img, 2, host_color, host_notice),
        ];
        if shown == [0, 0, 0] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected banking's, one of work's and the host's notice, newest first: {shown:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The compositor's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(c: &Compositor) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// A 16384×16384 XRGB buffer (1 GiB, sparse): its top-left 1024×512 block is magenta on the
/// left half and green on the right, the rest black.
fn huge_buffer(cl: &Client) -> wayland_client::protocol::wl_buffer::WlBuffer {
    use std::io::{Seek, SeekFrom, Write};
    const SIDE: i32 = 16384;
    let mut file = tempfile::tempfile().expect("shm file");
    let stride = SIDE as u64 * 4;
    file.set_len(stride * SIDE as u64)
        .expect("a sparse 1 GiB file");
    let row: Vec<u8> = (0..1024)
        .flat_map(|x| {
            if x < 512 {
                [0xff, 0, 0xff, 0xff]
            } else {
                [0, 0xc0, 0, 0xff]
            }
        })
        .collect();
    for y in 0..512u64 {
        file.seek(SeekFrom::Start(y * stride)).expect("seek");
        file.write_all(&row).expect("write shm");
    }
    let pool = cl
        .shm
        .create_pool(file.as_fd(), SIDE * SIDE * 4, &cl.qh, ());
    let buf = pool.create_buffer(
        0,
        SIDE,
        SIDE,
        SIDE * 4,
        wl_shm::Format::Xrgb8888,
        &cl.qh,
        (),
    );
    pool.destroy();
    buf
}

/// A VM's 16384×16384 buffer is shown where it is visible (its corner, inside its frame) and
/// costs the compositor memory for that part only: the renderer's own import would copy all
/// 1 GiB of it (`bulkhead_compositor::visible`).
#[test]
fn a_huge_buffer_is_copied_only_where_it_is_visible() {
    let mut c = Compositor::start(TWO_VMS);
    let mut cl = Client::connect(&c.vm_socket("work"));
    let t = cl.toplevel("huge");
    if let Some(serial) = cl.events.configure_serial.take() {
        t.xdg.ack_configure(serial);
    }
    let before = peak_rss_kib(&c);
    let buf = huge_buffer(&cl);
    t.surface.attach(Some(&buf), 0, 0);
    t.surface.damage_buffer(0, 0, 16384, 16384);
    t.surface.commit();
    cl.roundtrip();
    let w = c.wait_window("work", "huge");
    let img = c.screenshot("huge-buffer");
    // The content starts at the window's geometry; whatever of the block is on screen shows
    // magenta left of x = 512 and green right of it.
    let (mut magenta, mut green, mut wrong) = (0, 0, 0);
    for y in w.geometry.y.max(0)..(w.geometry.y + 512).min(img.height as i32) {
        for x in w.geometry.x.max(0)..(w.geometry.x + 1024).min(img.width as i32) {
            let px = img.pixel(x, y);
            let want = if x - w.geometry.x < 512 {
                [0xff, 0, 0xff]
            } else {
                [0, 0xc0, 0]
            };
            match px {
                p if p == want && want[0] == 0xff => magenta += 1,
                p if p == want => green += 1,
                _ => wrong += 1,
            }
        }
    }
    assert!(
        magenta > 10_000 && green > 10_000 && wrong == 0,
        "the block's visible part: {magenta} magenta, {green} green, {wrong} other pixels; {w:?}"
    );
    // Framed in work's colour where the frame is on screen: the left border and the title
    // bar (the rest of the frame is off screen with most of the window).
    assert_eq!(
        img.pixel(w.frame.x.max(0) + 1, w.geometry.y + 100),
        WORK,
        "{w:?}"
    );
    assert_eq!(
        img.pixel(img.width as i32 - 3, w.frame.y.max(0) + 2),
        WORK,
        "{w:?}"
    );
    let grown = peak_rss_kib(&c).saturating_sub(before);
    assert!(
        grown < 256 * 1024,
        "the compositor's peak memory grew by {} MiB for a 1 GiB buffer mostly off screen",
        grown / 1024
    );
    assert!(c
        .log_text()
        .contains("a 16384×16384 buffer: uploading only what is visible of it"));

    // Turned by 180° (attached again, as clients do), the buffer shows its black far corner
    // there: the copy is taken where the transform says.
    t.surface
        .set_buffer_transform(wayland_client::protocol::wl_output::Transform::_180);
    t.surface.attach(Some(&buf), 0, 0);
    t.surface.damage_buffer(0, 0, 16384, 16384);
    t.surface.commit();
    cl.roundtrip();
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let img = c.screenshot("huge-buffer-turned");
        let (x, y) = (w.geometry.x.max(0) + 100, w.geometry.y.max(0) + 100);
        if img.pixel(x, y) == [0, 0, 0] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the turned buffer still shows {:?} at {x},{y}",
            img.pixel(x, y)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(c.running());
}
