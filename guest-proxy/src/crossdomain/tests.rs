//! The cross-domain proxy over a scripted device: hostile input from the app and from the host,
//! id translation, command packing, damage copies.

use super::*;
use crate::wire::test_messages::{bind_body, words};
use std::os::fd::BorrowedFd;
use std::ptr::NonNull;

use crate::virtgpu::ResourceInfo;

/// A device that records commands and answers from a script: each POLL puts the next
/// scripted ring message into the channel ring and signals; with none left, it ends the
/// relay through the stop pipe.
struct FakeGpu {
    mem: Mutex<Vec<Vec<u8>>>,
    /// The command of each execbuffer.
    cmds: Mutex<Vec<u8>>,
    script: Mutex<VecDeque<Vec<u8>>>,
    /// Blobs named by SENDs ("send", resource) and closed ("close", handle), in order.
    uses: Mutex<Vec<(&'static str, u32)>>,
    events: (File, File),
    stop: Mutex<Option<File>>,
    reqs: ImageRequirements,
}

impl FakeGpu {
    fn new() -> (FakeGpu, OwnedFd) {
        let (r, w) = nix::unistd::pipe().unwrap();
        let (sr, sw) = nix::unistd::pipe().unwrap();
        let fake = FakeGpu {
            mem: Mutex::new(Vec::new()),
            cmds: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            uses: Mutex::new(Vec::new()),
            events: (File::from(r), File::from(w)),
            stop: Mutex::new(Some(File::from(sw))),
            reqs: ImageRequirements {
                size: 1 << 20,
                blob_id: 2,
                ..Default::default()
            },
        };
        (fake, sr)
    }
}

impl VirtGpu for FakeGpu {
    fn context_init(&self, _: u32, _: u32, _: u64) -> io::Result<()> {
        Ok(())
    }
    fn create_blob(&self, _: u32, _: u32, size: u64, _: u64) -> io::Result<Blob> {
        let mut mem = self.mem.lock().unwrap();
        mem.push(vec![0u8; size as usize]);
        let n = mem.len() as u32;
        Ok(Blob {
            bo_handle: n,
            res_handle: n,
        })
    }
    fn map(&self, bo: u32, size: usize) -> io::Result<Mapping> {
        let mut mem = self.mem.lock().unwrap();
        let m = &mut mem[bo as usize - 1];
        assert!(size <= m.len());
        // SAFETY: the Vec is never resized or freed while the fake lives, and the relay
        // drops its mappings before the device.
        Ok(unsafe { Mapping::new(NonNull::new(m.as_mut_ptr()).unwrap(), size, false) })
    }
    fn execbuffer(&self, cmd: &[u8], _: &[u32], _: u32) -> io::Result<()> {
        self.cmds.lock().unwrap().push(cmd[0]);
        match cmd[0] {
            CMD_SEND => {
                let (send, _) = SendReceive::read_from_prefix(cmd).unwrap();
                for i in 0..send.num_identifiers as usize {
                    if send.identifier_types[i] == ID_TYPE_VIRTGPU_BLOB {
                        self.uses
                            .lock()
                            .unwrap()
                            .push(("send", send.identifiers[i]));
                    }
                }
            }
            CMD_GET_IMAGE_REQUIREMENTS => {
                let mut mem = self.mem.lock().unwrap();
                mem[0][..64].copy_from_slice(self.reqs.as_bytes());
            }
            CMD_POLL => match self.script.lock().unwrap().pop_front() {
                Some(msg) => {
                    let mut mem = self.mem.lock().unwrap();
                    mem[1][..msg.len()].copy_from_slice(&msg);
                    (&self.events.1).write_all(&[1])?;
                }
                None => {
                    if let Some(mut s) = self.stop.lock().unwrap().take() {
                        s.write_all(&[1])?;
                    }
                }
            },
            _ => {}
        }
        Ok(())
    }
    fn wait(&self, _: u32) -> io::Result<()> {
        Ok(())
    }
    fn resource_info(&self, _: u32) -> io::Result<ResourceInfo> {
        Err(io::Error::other("unused"))
    }
    fn close(&self, bo: u32) -> io::Result<()> {
        self.uses.lock().unwrap().push(("close", bo));
        Ok(())
    }
    fn event_fd(&self) -> BorrowedFd<'_> {
        self.events.0.as_fd()
    }
    fn read_events(&self) -> io::Result<usize> {
        use std::io::Read;
        let mut b = [0u8; 16];
        (&self.events.0).read(&mut b)
    }
}

fn state() -> State {
    State::new()
}

fn channel(fake: FakeGpu) -> Channel {
    channel_and_fake(fake).0
}

fn channel_and_fake(fake: FakeGpu) -> (Channel, Arc<FakeGpu>) {
    let fake: Arc<FakeGpu> = Arc::new(fake);
    let open: Opener = {
        let f = fake.clone();
        Arc::new(move || Ok(Box::new(Shared(f.clone())) as Box<dyn VirtGpu>))
    };
    (Channel::open(&open).unwrap(), fake)
}

/// The fake behind an Arc, so tests keep a handle on it.
struct Shared(Arc<FakeGpu>);
impl VirtGpu for Shared {
    fn context_init(&self, a: u32, b: u32, c: u64) -> io::Result<()> {
        self.0.context_init(a, b, c)
    }
    fn create_blob(&self, a: u32, b: u32, c: u64, d: u64) -> io::Result<Blob> {
        self.0.create_blob(a, b, c, d)
    }
    fn map(&self, a: u32, b: usize) -> io::Result<Mapping> {
        self.0.map(a, b)
    }
    fn execbuffer(&self, a: &[u8], b: &[u32], c: u32) -> io::Result<()> {
        self.0.execbuffer(a, b, c)
    }
    fn wait(&self, a: u32) -> io::Result<()> {
        self.0.wait(a)
    }
    fn resource_info(&self, a: u32) -> io::Result<ResourceInfo> {
        self.0.resource_info(a)
    }
    fn close(&self, a: u32) -> io::Result<()> {
        self.0.close(a)
    }
    fn event_fd(&self) -> BorrowedFd<'_> {
        self.0.event_fd()
    }
    fn read_events(&self) -> io::Result<usize> {
        self.0.read_events()
    }
}

/// Runs one request of the app.
fn req(
    st: &mut State,
    ch: &Channel,
    sender: u32,
    opcode: u16,
    body: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<(Outgoing, Vec<u8>), String> {
    let mut msg = wire::message_bytes(sender, opcode, body);
    let (mut out, mut local) = (Outgoing::default(), Vec::new());
    let mut fds = VecDeque::from(fds);
    request(
        st, ch, sender, opcode, &mut msg, &mut fds, &mut out, &mut local,
    )?;
    Ok((out, local))
}

fn pool_fd(size: u64) -> OwnedFd {
    let f = tempfile::tempfile().unwrap();
    f.set_len(size).unwrap();
    OwnedFd::from(f)
}

/// wl_registry 2, wl_shm 3 (host ids 2, 3), a pool 4 of 4096 bytes.
fn with_pool(st: &mut State, ch: &Channel) {
    req(st, ch, 1, 1, &words(&[2]), vec![]).unwrap();
    let mut bind = words(&[1, 7]);
    bind.extend(b"wl_shm\0\0");
    bind.extend(words(&[1, 3]));
    req(st, ch, 2, 0, &bind, vec![]).unwrap();
    let (out, _) = req(st, ch, 3, 0, &words(&[4, 4096]), vec![pool_fd(4096)]).unwrap();
    assert!(out.sends.is_empty(), "the pool stays in the guest");
}

#[test]
fn buffers_become_host_pools_with_host_ids_in_order() {
    let (fake, _stop) = FakeGpu::new();
    let (ch, fake) = channel_and_fake(fake);
    let mut st = state();
    with_pool(&mut st, &ch);
    // create_buffer(new_id 5, offset 0, 16x16, stride 64, xrgb8888)
    let (out, _) = req(&mut st, &ch, 4, 0, &words(&[5, 0, 16, 16, 64, 1]), vec![]).unwrap();
    assert_eq!(out.sends.len(), 1);
    let (data, idents) = &out.sends[0];
    // Host: wl_shm@3.create_pool(new 4, fd, 1024), wl_shm_pool@4.create_buffer(new 5, ...),
    // wl_shm_pool@4.destroy — the pool's id allocated first.
    let mut expect = wire::message_bytes(3, 0, &words(&[4, 1024]));
    expect.extend(wire::message_bytes(4, 0, &words(&[5, 0, 16, 16, 64, 1])));
    expect.extend(wire::message_bytes(4, 1, &[]));
    assert_eq!(data, &expect);
    assert_eq!(idents.len(), 1);
    assert_eq!(idents[0].1, ID_TYPE_VIRTGPU_BLOB);
    // The host deletes its pool: nothing for the app; the id is reused next.
    let mut wl = Vec::new();
    let mut del = wire::message_bytes(1, 1, &words(&[4]));
    event(&mut st, 1, 1, &mut del, &mut wl, &mut HostFds::default()).unwrap();
    assert!(wl.is_empty());
    assert_eq!(st.ids.bind(9).unwrap(), 4);
    // The app's pool destroy is answered by the proxy itself.
    let (out, local) = req(&mut st, &ch, 4, 1, &[], vec![]).unwrap();
    assert!(out.sends.is_empty());
    assert_eq!(local, wire::message_bytes(1, 1, &words(&[4])));
    // Init, then one image-requirements query: a second buffer of that size reuses it.
    req(&mut st, &ch, 3, 0, &words(&[10, 4096]), vec![pool_fd(4096)]).unwrap();
    req(&mut st, &ch, 10, 0, &words(&[11, 0, 16, 16, 64, 1]), vec![]).unwrap();
    let cmds = fake.cmds.lock().unwrap().clone();
    assert_eq!(cmds, [CMD_INIT, CMD_GET_IMAGE_REQUIREMENTS]);
}

#[test]
fn hostile_requests_drop_the_app_without_a_panic() {
    let neg = |v: u32| 0u32.wrapping_sub(v);
    let mut bind = words(&[1, 19]);
    bind.extend(b"zwlr_screencopy_v1\0\0\0");
    bind.extend(words(&[1, 7]));
    let bad: Vec<(u32, u16, Vec<u8>)> = vec![
        (4, 0, words(&[5, 0, neg(5), 10, 40, 0])),
        (4, 0, words(&[5, neg(1), 10, 10, 40, 0])),
        (4, 0, words(&[5, 0, 10, 10, neg(40), 0])),
        (
            4,
            0,
            words(&[5, 0, 0x7fff_ffff, 0x7fff_ffff, 0x7fff_ffff, 0]),
        ),
        (4, 2, words(&[1 << 20])),
        (4, 2, words(&[neg(1)])),
        (99, 0, vec![]),
        (4, 42, vec![]),
        (2, 0, bind),
        // An object argument the app never created: wl_surface.attach(buffer 77).
        (1, 0, words(&[3])), // wl_display.sync(new_id 3): 3 is in use
    ];
    for (sender, opcode, body) in bad {
        let (fake, _stop) = FakeGpu::new();
        let ch = channel(fake);
        let mut st = state();
        with_pool(&mut st, &ch);
        let r = req(&mut st, &ch, sender, opcode, &body, vec![]);
        assert!(r.is_err(), "accepted {sender}/{opcode} {body:?}");
    }
    // create_pool without its fd; a request carrying an fd the proxy does not translate.
    let (fake, _stop) = FakeGpu::new();
    let ch = channel(fake);
    let mut st = state();
    with_pool(&mut st, &ch);
    let r = req(&mut st, &ch, 3, 0, &words(&[6, 4096]), vec![]);
    assert!(r.unwrap_err().contains("without its file descriptor"));
    st.objects.insert(8, &WL_KEYBOARD_INTERFACE).unwrap();
    st.ids.bind(8).unwrap();
    st.objects.insert(9, &WL_SURFACE_INTERFACE).unwrap();
    st.ids.bind(9).unwrap();
    let r = req(&mut st, &ch, 9, 1, &words(&[77, 0, 0]), vec![]);
    assert!(r.unwrap_err().contains("unknown object 77"));
}

/// Every global the proxy offers binds at its version and not above; a primary selection
/// offer's receive needs its pipe, which goes to the host as a read pipe like the clipboard's.
#[test]
fn each_offered_global_binds_up_to_its_version_only() {
    let (fake, _stop) = FakeGpu::new();
    let ch = channel(fake);
    let mut st = state();
    with_pool(&mut st, &ch);
    for (i, iface) in crate::wlproxy::ALLOWED.iter().enumerate() {
        let id = 20 + i as u32;
        let over = bind_body(iface.name, iface.version + 1, id);
        let r = req(&mut st, &ch, 2, 0, &over, vec![]);
        assert!(
            r.is_err(),
            "{} bound above version {}",
            iface.name,
            iface.version
        );
        req(
            &mut st,
            &ch,
            2,
            0,
            &bind_body(iface.name, iface.version, id),
            vec![],
        )
        .unwrap();
        assert_eq!(st.objects.get(id).map(|i| i.name), Some(iface.name));
    }
    use wayland_protocols::wp::primary_selection::zv1::client::__interfaces::ZWP_PRIMARY_SELECTION_OFFER_V1_INTERFACE;
    st.objects
        .insert(60, &ZWP_PRIMARY_SELECTION_OFFER_V1_INTERFACE)
        .unwrap();
    st.ids.bind(60).unwrap();
    let mut mime = words(&[11]);
    mime.extend(b"text/plain\0\0");
    let r = req(&mut st, &ch, 60, 0, &mime, vec![]);
    assert!(r.unwrap_err().contains("without its file descriptor"));
    let (_r, w) = nix::unistd::pipe().unwrap();
    let (out, _) = req(&mut st, &ch, 60, 0, &mime, vec![w]).unwrap();
    assert_eq!(out.sends.len(), 1);
    assert!(matches!(out.sends[0].1[..], [(_, ID_TYPE_READ_PIPE)]));
}

#[test]
fn a_commit_copies_the_damage_into_the_host_blob() {
    let (fake, _stop) = FakeGpu::new();
    let ch = channel(fake);
    let mut st = state();
    req(&mut st, &ch, 1, 1, &words(&[2]), vec![]).unwrap();
    let mut bind = words(&[1, 7]);
    bind.extend(b"wl_shm\0\0");
    bind.extend(words(&[1, 3]));
    req(&mut st, &ch, 2, 0, &bind, vec![]).unwrap();
    let f = tempfile::tempfile().unwrap();
    f.set_len(4096).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[7u8; 4096], 0).unwrap();
    req(
        &mut st,
        &ch,
        3,
        0,
        &words(&[4, 4096]),
        vec![OwnedFd::from(f)],
    )
    .unwrap();
    req(&mut st, &ch, 4, 0, &words(&[5, 0, 16, 16, 64, 1]), vec![]).unwrap();
    let mut bind = words(&[2, 14]);
    bind.extend(b"wl_compositor\0\0\0");
    bind.extend(words(&[1, 6]));
    req(&mut st, &ch, 2, 0, &bind, vec![]).unwrap();
    req(&mut st, &ch, 6, 0, &words(&[7]), vec![]).unwrap(); // create_surface
    req(&mut st, &ch, 7, 1, &words(&[5, 0, 0]), vec![]).unwrap(); // attach
    req(&mut st, &ch, 7, 9, &words(&[0, 0, 4, 2]), vec![]).unwrap(); // damage_buffer
    req(&mut st, &ch, 7, 6, &[], vec![]).unwrap(); // commit: all of it the first time
    assert_eq!(st.copied, 16 * 64);
    let b = st.buffers.get(&5).unwrap();
    let mut row = [0u8; 64];
    b.host.map().unwrap().read(64 * 15, &mut row).unwrap();
    assert_eq!(row, [7u8; 64]);
    req(&mut st, &ch, 7, 9, &words(&[2, 3, 4, 2]), vec![]).unwrap();
    req(&mut st, &ch, 7, 6, &[], vec![]).unwrap(); // then only the damage: 2 rows of 16
    assert_eq!(st.copied, 16 * 64 + 2 * 16);
}

#[test]
fn sends_respect_the_command_size_and_keep_fds_with_their_message() {
    let mut out = Outgoing::default();
    let big = vec![0u8; 4000];
    out.push(&[1; 100], &[]);
    out.push(&big, &[(5, ID_TYPE_READ_PIPE)]);
    for _ in 0..40 {
        out.push(&[2; 8], &[(6, ID_TYPE_VIRTGPU_BLOB)]);
    }
    for (data, idents) in &out.sends {
        assert!(std::mem::size_of::<SendReceive>() + data.len() <= MAX_COMMAND);
        assert!(idents.len() <= MAX_IDENTIFIERS);
    }
    // The 4000-byte message does not fit after the first: it starts the second SEND and
    // carries its fd there.
    assert_eq!(out.sends[0].0.len(), 100);
    assert_eq!(out.sends[1].1, [(5, ID_TYPE_READ_PIPE)]);
    let total: usize = out.sends.iter().map(|s| s.0.len()).sum();
    assert_eq!(total, 100 + 4000 + 40 * 8);
}

fn receive(ids: &[(u32, u32, u32)], data: &[u8], declared: Option<u32>) -> Vec<u8> {
    let mut rx = SendReceive {
        hdr: Header::new::<SendReceive>(CMD_RECEIVE, CHANNEL_RING, data.len()),
        num_identifiers: declared.unwrap_or(ids.len() as u32),
        opaque_data_size: data.len() as u32,
        ..Default::default()
    };
    for (i, (id, kind, size)) in ids.iter().enumerate() {
        rx.identifiers[i] = *id;
        rx.identifier_types[i] = *kind;
        rx.identifier_sizes[i] = *size;
    }
    let mut m = rx.as_bytes().to_vec();
    m.extend(data);
    m
}

/// Runs the host-to-app direction over a scripted ring; returns its result and what the
/// app received.
fn down(script: Vec<Vec<u8>>) -> (Result<(), String>, Vec<u8>) {
    let (fake, stop) = FakeGpu::new();
    fake.script.lock().unwrap().extend(script);
    let ch = channel(fake);
    let mut st = state();
    st.objects.insert(2, &WL_REGISTRY_INTERFACE).unwrap();
    st.ids.bind(2).unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    let out: AppOut = Arc::new(Mutex::new(a));
    let st = Mutex::new(st);
    let r = host_to_app(&ch, &st, &out, &stop, &Sending::default(), None);
    drop(out);
    b.set_nonblocking(true).unwrap();
    let mut got = vec![0u8; 65536];
    let n = fdpass::recv(&b, &mut got, &mut Vec::new()).unwrap_or(0);
    got.truncate(n);
    (r, got)
}

#[test]
fn the_hosts_messages_are_translated_and_filtered() {
    // wl_registry@2.global(1, "wl_compositor", 6) and (2, "zwlr_screencopy_manager_v1", 3)
    let mut g1 = words(&[1, 14]);
    g1.extend(b"wl_compositor\0\0\0");
    g1.extend(words(&[99]));
    let mut g2 = words(&[2, 27]);
    g2.extend(b"zwlr_screencopy_manager_v1\0\0");
    g2.extend(words(&[3]));
    let mut data = wire::message_bytes(2, 0, &g1);
    data.extend(wire::message_bytes(2, 0, &g2));
    let (r, got) = down(vec![receive(&[], &data, None)]);
    r.unwrap();
    // Only the compositor global reaches the app, capped at the version the proxy handles.
    let mut g1 = words(&[1, 14]);
    g1.extend(b"wl_compositor\0\0\0");
    g1.extend(words(&[WL_COMPOSITOR_INTERFACE.version]));
    assert_eq!(got, wire::message_bytes(2, 0, &g1));
}

#[test]
fn hostile_ring_messages_end_the_app_without_a_panic() {
    let cases: Vec<Vec<u8>> = vec![
        // More identifiers than a message holds.
        receive(&[], &[], Some(29)),
        // More bytes than a ring message holds.
        {
            let mut m = receive(&[], &[], None);
            m[12..16].copy_from_slice(&5000u32.to_ne_bytes());
            m
        },
        // An fd type apps do not take (an eventfd).
        receive(&[(3, 5, 0)], &[0; 8], None),
        // A blob far larger than a keymap.
        receive(&[(3, ID_TYPE_VIRTGPU_BLOB, u32::MAX)], &[0; 8], None),
        // An unknown ring command.
        vec![42, 1, 8, 0, 0, 0, 0, 0],
        // An event from an object that does not exist, and one that creates an object in
        // the app's id range.
        receive(&[], &wire::message_bytes(77, 0, &[]), None),
        receive(
            &[],
            &wire::message_bytes(1, 0, &words(&[2, 0, 0])), // wl_display.error, no text
            None,
        ),
        // A READ of more bytes than fit.
        {
            let rd = ReadWrite {
                hdr: Header::new::<ReadWrite>(CMD_READ, CHANNEL_RING, 0),
                identifier: 1,
                hang_up: 0,
                opaque_data_size: 9000,
                pad: 0,
            };
            rd.as_bytes().to_vec()
        },
    ];
    for c in cases {
        let (r, _) = down(vec![c.clone()]);
        assert!(r.is_err(), "accepted {c:?}");
    }
}

/// Xwayland creates a buffer and destroys it in one batch: the blob the SEND names is closed
/// only after that SEND (the host refuses a SEND naming a closed blob: "invalid resource
/// id", and with it every message of the batch, leaving the host's ids out of step).
#[test]
fn a_buffer_destroyed_in_the_batch_that_made_it_keeps_its_blob_until_sent() {
    let (fake, _stop) = FakeGpu::new();
    let (ch, fake) = channel_and_fake(fake);
    let (app, ours) = UnixStream::pair().unwrap();
    let mut batch = wire::message_bytes(1, 1, &words(&[2]));
    let mut bind = words(&[1, 7]);
    bind.extend(b"wl_shm\0\0");
    bind.extend(words(&[1, 3]));
    batch.extend(wire::message_bytes(2, 0, &bind));
    batch.extend(wire::message_bytes(3, 0, &words(&[4, 4096])));
    batch.extend(wire::message_bytes(4, 0, &words(&[5, 0, 16, 16, 64, 1])));
    batch.extend(wire::message_bytes(5, 0, &[])); // wl_buffer.destroy
    fdpass::send(&app, &batch, &[pool_fd(4096)]).unwrap();
    app.shutdown(std::net::Shutdown::Write).unwrap();
    let state = Mutex::new(state());
    let out: AppOut = Arc::new(Mutex::new(ours.try_clone().unwrap()));
    app_to_host(&ours, &ch, &state, &out, &Sending::default()).unwrap();
    let uses = fake.uses.lock().unwrap().clone();
    let sent = uses.iter().position(|u| u.0 == "send");
    let closed = uses.iter().position(|u| u.0 == "close");
    assert!(
        matches!((sent, closed), (Some(s), Some(c)) if s < c),
        "the blob was closed before the SEND that names it: {uses:?}"
    );
}
