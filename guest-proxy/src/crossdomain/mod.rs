//! The cross-domain transport (crosvm's virtio-gpu `cross-domain` context type): each app of
//! the guest gets its own context, whose host side (crosvm, or rutabaga_gfx in this process)
//! opens one connection to the VM's Wayland socket of the compositor.
//!
//! The proxy is a real two-sided Wayland proxy here: the host connection carries object ids
//! the proxy allocates, so it can create host objects of its own. An app's wl_shm pool stays
//! in the guest; each of its buffers becomes a host wl_shm buffer over a host blob
//! (GET_IMAGE_REQUIREMENTS, then a HOST3D blob the guest maps), and each commit copies only
//! what the host's copy lacks. Keymaps and other host memory arrive as blobs that become
//! sealed memfds; clipboard and drag-and-drop pipes map to cross-domain READ/WRITE pipes.
//! Every command and ring message respects the 4096-byte limit; everything from the app and
//! the host is parsed with bounds, and a malformed message ends that app only.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex, MutexGuard};

use bulkhead_ipc::wlstream::{fdpass, pump, Pipes, MAX_BLOB, MAX_IDS, MAX_SHM};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use wayland_backend::protocol::ArgumentType;
use wayland_client::protocol::__interfaces::*;
use zerocopy::{FromBytes, IntoBytes};

use crate::shm::{Damage, Layout, Rect};
use crate::virtgpu::{
    page_align, Blob, Mapping, VirtGpu, BLOB_FLAG_USE_MAPPABLE, BLOB_FLAG_USE_SHAREABLE,
    BLOB_MEM_GUEST, BLOB_MEM_HOST3D, CAPSET_CROSS_DOMAIN,
};
use crate::wire::{self, int, object, Arg, Objects, HEADER};
use crate::wlproxy::{allowed, filter_global, sealed_memfd};

mod protocol;
use protocol::*;
pub mod xroles;
pub mod xsel;

/// Most Wayland bytes one SEND carries.
const MAX_SEND_DATA: usize = MAX_COMMAND - std::mem::size_of::<SendReceive>();
/// Most pipe bytes one WRITE carries.
const MAX_WRITE_DATA: usize = MAX_COMMAND - std::mem::size_of::<ReadWrite>();

/// Opens a device file: one per app, as each app gets its own context.
pub type Opener = Arc<dyn Fn() -> io::Result<Box<dyn VirtGpu>> + Send + Sync>;

/// Listens on `socket` and relays every app that connects over its own cross-domain context.
pub fn serve(socket: &std::path::Path, open: Opener) -> io::Result<()> {
    crate::wlproxy::listen(socket, move |app| relay(app, &open))
}

/// A ring: guest memory the host writes replies into.
struct Ring {
    blob: Blob,
    map: Mapping,
}

/// One app's context and its two rings.
struct Channel {
    gpu: Arc<dyn VirtGpu>,
    query: Ring,
    channel: Ring,
}

fn e(err: io::Error) -> String {
    err.to_string()
}

impl Channel {
    fn open(open: &Opener) -> io::Result<Channel> {
        let gpu: Arc<dyn VirtGpu> = Arc::from(open()?);
        gpu.context_init(CAPSET_CROSS_DOMAIN, 2, 1 << CHANNEL_RING)?;
        let ring = |gpu: &Arc<dyn VirtGpu>| -> io::Result<Ring> {
            let blob = gpu.create_blob(BLOB_MEM_GUEST, BLOB_FLAG_USE_MAPPABLE, RING_SIZE, 0)?;
            let map = gpu.map(blob.bo_handle, RING_SIZE as usize)?;
            Ok(Ring { blob, map })
        };
        let query = ring(&gpu)?;
        let channel = ring(&gpu)?;
        let init = Init {
            hdr: Header::new::<Init>(CMD_INIT, QUERY_RING, 0),
            query_ring_id: query.blob.res_handle,
            channel_ring_id: channel.blob.res_handle,
            channel_type: CHANNEL_TYPE_WAYLAND,
        };
        gpu.execbuffer(init.as_bytes(), &[], QUERY_RING)?;
        Ok(Channel {
            gpu,
            query,
            channel,
        })
    }

    /// SEND: Wayland bytes and the identifiers of the fds that go with them.
    fn send(&self, data: &[u8], idents: &[(u32, u32)]) -> io::Result<()> {
        if data.len() > MAX_SEND_DATA || idents.len() > MAX_IDENTIFIERS {
            return Err(io::Error::other("a SEND beyond the command size limit"));
        }
        let mut cmd = SendReceive {
            hdr: Header::new::<SendReceive>(CMD_SEND, QUERY_RING, data.len()),
            num_identifiers: idents.len() as u32,
            opaque_data_size: data.len() as u32,
            ..Default::default()
        };
        for (i, (id, kind)) in idents.iter().enumerate() {
            cmd.identifiers[i] = *id;
            cmd.identifier_types[i] = *kind;
        }
        let mut bytes = cmd.as_bytes().to_vec();
        bytes.extend_from_slice(data);
        self.gpu.execbuffer(&bytes, &[], QUERY_RING)
    }

    /// WRITE: bytes for a host pipe (empty with `hang_up` at its end).
    fn write_pipe(gpu: &dyn VirtGpu, id: u32, data: &[u8], hang_up: bool) -> io::Result<()> {
        let cmd = ReadWrite {
            hdr: Header::new::<ReadWrite>(CMD_WRITE, QUERY_RING, data.len()),
            identifier: id,
            hang_up: hang_up as u32,
            opaque_data_size: data.len() as u32,
            pad: 0,
        };
        let mut bytes = cmd.as_bytes().to_vec();
        bytes.extend_from_slice(data);
        gpu.execbuffer(&bytes, &[], QUERY_RING)
    }

    /// The host's requirements for a linear image of `width` x `height` bytes: its blob id
    /// and size.
    fn image_requirements(&self, width: u32, height: u32) -> io::Result<(u32, u64)> {
        let cmd = GetImageRequirements {
            hdr: Header::new::<GetImageRequirements>(CMD_GET_IMAGE_REQUIREMENTS, QUERY_RING, 0),
            width,
            height,
            drm_format: DRM_FORMAT_R8,
            flags: GRALLOC_LINEAR_SW,
        };
        self.gpu
            .execbuffer(cmd.as_bytes(), &[self.query.blob.bo_handle], QUERY_RING)?;
        self.gpu.wait(self.query.blob.bo_handle)?;
        let mut raw = [0u8; std::mem::size_of::<ImageRequirements>()];
        self.query.map.read(0, &mut raw)?;
        let reqs = ImageRequirements::read_from_bytes(&raw[..])
            .map_err(|_| io::Error::other("short image requirements"))?;
        let need = width as u64 * height as u64;
        if reqs.blob_id == 0 || reqs.size < need || reqs.size > MAX_SHM + RING_SIZE {
            return Err(io::Error::other(format!(
                "the host answered an image of {width}x{height} bytes with {reqs:?}"
            )));
        }
        Ok((reqs.blob_id, reqs.size))
    }

    /// A host blob named by the host (`blob_id`), mapped.
    fn host_blob(&self, blob_id: u32, size: u64, flags: u32) -> io::Result<HostBlob> {
        let size = page_align(size).ok_or_else(|| io::Error::other("blob too large"))?;
        let blob = self
            .gpu
            .create_blob(BLOB_MEM_HOST3D, flags, size, blob_id as u64)?;
        match self.gpu.map(blob.bo_handle, size as usize) {
            Ok(map) => Ok(HostBlob {
                gpu: self.gpu.clone(),
                blob,
                map: Some(map),
            }),
            Err(err) => {
                let _ = self.gpu.close(blob.bo_handle);
                Err(err)
            }
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        for r in [&self.query, &self.channel] {
            let _ = self.gpu.close(r.blob.bo_handle);
        }
    }
}

/// A mapped host blob; closed when dropped.
struct HostBlob {
    gpu: Arc<dyn VirtGpu>,
    blob: Blob,
    map: Option<Mapping>,
}

impl HostBlob {
    fn map(&self) -> io::Result<&Mapping> {
        self.map
            .as_ref()
            .ok_or_else(|| io::Error::other("unmapped blob"))
    }
}

impl Drop for HostBlob {
    fn drop(&mut self) {
        self.map = None;
        let _ = self.gpu.close(self.blob.bo_handle);
    }
}

/// Ids of the host connection, which the proxy allocates, against the app's.
struct Ids {
    to_host: HashMap<u32, u32>,
    to_app: HashMap<u32, u32>,
    /// Host objects of the proxy's own (pools of host buffers, a released wl_shm).
    ours: HashSet<u32>,
    free: Vec<u32>,
    next: u32,
}

/// Server-allocated ids are the same on both sides.
const SERVER_IDS: u32 = 0xff00_0000;

impl Ids {
    fn new() -> Ids {
        Ids {
            to_host: HashMap::from([(1, 1)]),
            to_app: HashMap::from([(1, 1)]),
            ours: HashSet::new(),
            free: Vec::new(),
            next: 2,
        }
    }

    /// A free host id: the most recently deleted first, as libwayland does (the compositor
    /// takes a new id only if it is free or one past the highest).
    fn alloc(&mut self) -> Result<u32, String> {
        if let Some(id) = self.free.pop() {
            return Ok(id);
        }
        if self.next as usize > wire::MAX_OBJECTS + 16 {
            return Err("too many objects".into());
        }
        self.next += 1;
        Ok(self.next - 1)
    }

    fn bind(&mut self, app: u32) -> Result<u32, String> {
        if app >= SERVER_IDS || self.to_host.contains_key(&app) {
            return Err(format!("new object {app} is already in use"));
        }
        let host = self.alloc()?;
        self.to_host.insert(app, host);
        self.to_app.insert(host, app);
        Ok(host)
    }

    fn host(&self, app: u32) -> Option<u32> {
        if app == 0 || app >= SERVER_IDS {
            Some(app)
        } else {
            self.to_host.get(&app).copied()
        }
    }

    fn app(&self, host: u32) -> Option<u32> {
        if host == 0 || host >= SERVER_IDS {
            Some(host)
        } else {
            self.to_app.get(&host).copied()
        }
    }

    /// The app forgets an object the host keeps (the proxy's from now on).
    fn adopt(&mut self, app: u32) -> Option<u32> {
        let host = self.to_host.remove(&app)?;
        self.to_app.remove(&host);
        self.ours.insert(host);
        Some(host)
    }

    /// wl_display.delete_id from the host: the app's id to pass it on for, if any.
    fn deleted(&mut self, host: u32) -> Option<u32> {
        if !(2..SERVER_IDS).contains(&host) {
            return None;
        }
        if self.ours.remove(&host) {
            self.free.push(host);
            return None;
        }
        let app = self.to_app.remove(&host)?;
        self.to_host.remove(&app);
        self.free.push(host);
        Some(app)
    }
}

struct Pool {
    fd: File,
    size: u64,
    /// The host wl_shm to create this pool's host pools on.
    shm: u32,
    destroyed: bool,
    buffers: u32,
}

struct Buffer {
    pool: u32,
    layout: Layout,
    host: HostBlob,
}

/// What one app connection knows; shared by its two directions.
struct State {
    objects: Objects,
    ids: Ids,
    pools: HashMap<u32, Pool>,
    pool_keys: HashMap<u32, u32>,
    next_pool: u32,
    buffers: HashMap<u32, Buffer>,
    /// Host blobs of buffers the app destroyed in the batch being relayed: closed only once
    /// the batch is sent, as a SEND of it may still name them (an app that creates and
    /// destroys a buffer in one batch, as Xwayland does, otherwise has the host refuse the
    /// SEND: "invalid resource id").
    retired: Vec<HostBlob>,
    damage: Damage,
    /// Image requirements the host already answered (their blob ids stay valid).
    image_reqs: HashMap<(u32, u32), (u32, u64)>,
    next_read_pipe: u32,
    /// App fds that data from host pipes goes into (wl_data_offer.receive).
    pipes: Pipes,
    /// Commits, and shm bytes copied into host blobs (logged when the app goes; the
    /// forwarding benchmark reads them).
    commits: u64,
    copied: u64,
    /// Roles of Xwayland's surfaces, on Xwayland's connection only.
    x: Option<xroles::XRoles>,
}

impl State {
    fn new() -> State {
        State {
            objects: Objects::new(&WL_DISPLAY_INTERFACE),
            ids: Ids::new(),
            pools: HashMap::new(),
            pool_keys: HashMap::new(),
            next_pool: 1,
            buffers: HashMap::new(),
            retired: Vec::new(),
            damage: Damage::default(),
            image_reqs: HashMap::new(),
            next_read_pipe: PIPE_READ_START,
            pipes: Pipes::default(),
            commits: 0,
            copied: 0,
            x: None,
        }
    }
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes and fd identifiers for the host, packed into SENDs at message boundaries.
#[derive(Default, Debug)]
struct Outgoing {
    sends: Vec<SendCmd>,
}

/// One SEND: Wayland bytes and (identifier, type) of each fd.
type SendCmd = (Vec<u8>, Vec<(u32, u32)>);

impl Outgoing {
    fn push(&mut self, msg: &[u8], idents: &[(u32, u32)]) {
        let fits = self.sends.last().is_some_and(|(d, i)| {
            d.len() + msg.len() <= MAX_SEND_DATA && i.len() + idents.len() <= MAX_IDENTIFIERS
        });
        if !fits {
            self.sends.push((Vec::new(), Vec::new()));
        }
        // A message longer than one SEND's data (up to 4096 bytes) is split; its fds go
        // with its first part.
        let mut rest = msg;
        let mut idents = idents;
        loop {
            let Some((d, i)) = self.sends.last_mut() else {
                return;
            };
            let n = rest.len().min(MAX_SEND_DATA - d.len());
            d.extend_from_slice(&rest[..n]);
            i.extend_from_slice(idents);
            idents = &[];
            rest = &rest[n..];
            if rest.is_empty() {
                return;
            }
            self.sends.push((Vec::new(), Vec::new()));
        }
    }
}

/// What the app gets on its socket (both directions write events to it).
type AppOut = Arc<Mutex<UnixStream>>;

fn to_app(out: &AppOut, bytes: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
    let sock = out.lock().unwrap_or_else(|e| e.into_inner());
    fdpass::send(&sock, bytes, fds)
}

/// wl_display.delete_id(id): what the proxy tells the app for objects only the guest had.
fn delete_id(id: u32) -> Vec<u8> {
    wire::message_bytes(1, 1, &id.to_ne_bytes())
}

/// Relays one app over a context of its own until either side ends or breaks the protocol.
pub fn relay(app: UnixStream, open: &Opener) -> Result<(), String> {
    relay_with(app, open, None)
}

/// The window manager's side of Xwayland's connection (`crate::xwayland`).
pub struct XLink {
    /// What the window manager wants done with Xwayland's surfaces.
    pub changes: std::sync::mpsc::Receiver<crate::xwm::Change>,
    /// What it must hear of the host, with a byte on `wake` after each batch.
    pub notices: std::sync::mpsc::Sender<xroles::Notice>,
    pub wake: OwnedFd,
}

/// Relays Xwayland like any app, and gives its surfaces the roles the window manager asks
/// for.
pub fn relay_x(app: UnixStream, open: &Opener, link: XLink) -> Result<(), String> {
    relay_with(app, open, Some(link))
}

/// Requests to the host go out one batch at a time, each whole: a batch of the app's and one
/// of the proxy's own (roles for Xwayland) never interleave, and a role is sent only after
/// the surface it is for.
type Sending = Arc<Mutex<()>>;

fn relay_with(app: UnixStream, open: &Opener, link: Option<XLink>) -> Result<(), String> {
    let channel =
        Arc::new(Channel::open(open).map_err(|err| format!("no cross-domain context: {err}"))?);
    let state = Arc::new(Mutex::new(State::new()));
    let sending: Sending = Arc::new(Mutex::new(()));
    let mut to_wm = None;
    if let Some(link) = link {
        lock(&state).x = Some(xroles::XRoles::default());
        to_wm = Some((link.notices, link.wake));
        let (s2, c2, g2) = (state.clone(), channel.clone(), sending.clone());
        let changes = link.changes;
        std::thread::spawn(move || {
            for change in changes.iter() {
                if let Err(err) = apply_change(&s2, &c2, &g2, change) {
                    eprintln!("bulkhead-wl-proxy: X window roles: {err}");
                    return;
                }
            }
        });
    }
    let out: AppOut = Arc::new(Mutex::new(app.try_clone().map_err(e)?));
    let (stop_r, stop_w) = nix::unistd::pipe().map_err(|err| err.to_string())?;
    let (s2, c2, o2, g2) = (state.clone(), channel.clone(), out.clone(), sending.clone());
    let app2 = app.try_clone().map_err(e)?;
    let down = std::thread::spawn(move || {
        let r = host_to_app(&c2, &s2, &o2, &stop_r, &g2, to_wm.as_ref());
        let _ = app2.shutdown(std::net::Shutdown::Both);
        r
    });
    let up = app_to_host(&app, &channel, &state, &out, &sending);
    let _ = File::from(stop_w).write_all(&[1]);
    let _ = app.shutdown(std::net::Shutdown::Both);
    let down = down
        .join()
        .unwrap_or_else(|_| Err("relay thread panicked".into()));
    // Host buffers go before the context.
    let mut st = lock(&state);
    st.buffers.clear();
    eprintln!(
        "bulkhead-wl-proxy: app done: {} commits, {} bytes copied to host blobs",
        st.commits, st.copied
    );
    drop(st);
    up.and(down)
}

/// Gives Xwayland's surface the role the window manager asked for, in a batch of its own.
fn apply_change(
    state: &Mutex<State>,
    ch: &Channel,
    sending: &Sending,
    change: crate::xwm::Change,
) -> Result<(), String> {
    let _turn = sending.lock().unwrap_or_else(|e| e.into_inner());
    let mut host = Outgoing::default();
    {
        let mut st = lock(state);
        let st = &mut *st;
        let Some(x) = st.x.as_mut() else {
            return Ok(());
        };
        match change {
            crate::xwm::Change::Receive { which, mime, fd } => {
                // No offer: the pipe closes and the X app gets nothing.
                if let Some(msg) = x.sel.receive(which, &mime) {
                    let fd = fd.into_fd().map_err(e)?;
                    st.next_read_pipe = st.next_read_pipe.wrapping_add(1);
                    st.pipes
                        .insert(st.next_read_pipe, File::from(fd))
                        .map_err(e)?;
                    host.push(&msg, &[(st.next_read_pipe, ID_TYPE_READ_PIPE)]);
                }
            }
            change => x.apply(&mut st.ids, &st.objects, change, &mut host)?,
        }
    }
    for (data, idents) in &host.sends {
        ch.send(data, idents)
            .map_err(|err| format!("host: {err}"))?;
    }
    Ok(())
}

fn app_to_host(
    app: &UnixStream,
    ch: &Channel,
    state: &Mutex<State>,
    out: &AppOut,
    sending: &Sending,
) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::new();
    let mut fds: VecDeque<OwnedFd> = VecDeque::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let mut new_fds = Vec::new();
        let n = fdpass::recv(app, &mut chunk, &mut new_fds).map_err(e)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        fds.extend(new_fds);
        if fds.len() > 4 * fdpass::MAX_FDS {
            return Err("the app sent file descriptors without messages".into());
        }
        let mut host = Outgoing::default();
        let mut local: Vec<u8> = Vec::new();
        let turn = sending.lock().unwrap_or_else(|e| e.into_inner());
        {
            let mut st = lock(state);
            while let Some((sender, opcode, len)) = wire::next_message(&buf)? {
                let mut msg = buf[..len].to_vec();
                request(
                    &mut st, ch, sender, opcode, &mut msg, &mut fds, &mut host, &mut local,
                )?;
                buf.drain(..len);
            }
            // Roles waiting for surfaces this batch made go right after it.
            let st = &mut *st;
            if let Some(x) = st.x.as_mut() {
                x.retry(&mut st.ids, &st.objects, &mut host)?;
            }
        }
        for (data, idents) in &host.sends {
            ch.send(data, idents)
                .map_err(|err| format!("host: {err}"))?;
        }
        // The batch is out: the blobs of buffers it destroyed may go.
        lock(state).retired.clear();
        drop(turn);
        if !local.is_empty() {
            to_app(out, &local, &[]).map_err(|err| format!("app: {err}"))?;
        }
    }
}

/// Handles one request: bookkeeping, id translation, shm and fd translation. What goes to the
/// host is appended to `host`; events only the proxy can answer (for guest-only objects) to
/// `local`.
#[allow(clippy::too_many_arguments)]
fn request(
    st: &mut State,
    ch: &Channel,
    sender: u32,
    opcode: u16,
    msg: &mut [u8],
    fds: &mut VecDeque<OwnedFd>,
    host: &mut Outgoing,
    local: &mut Vec<u8>,
) -> Result<(), String> {
    let iface = st
        .objects
        .get(sender)
        .ok_or_else(|| format!("request to unknown object {sender}"))?;
    let desc = wire::message(iface, opcode, true)?;
    let (args, offsets) = wire::parse_args_at(desc.signature, &msg[HEADER..])?;
    let mut take_fd = || -> Result<File, String> {
        fds.pop_front()
            .map(File::from)
            .ok_or_else(|| format!("{}.{} without its file descriptor", iface.name, desc.name))
    };
    let mut idents: Vec<(u32, u32)> = Vec::new();
    // Requests on objects that exist in the guest only, or that become host requests of the
    // proxy's own.
    match (iface.name, desc.name) {
        ("wl_shm", "create_pool") => {
            let id = object(&args, 0)?;
            let fd = take_fd()?;
            let size = int(&args, 2)?;
            if size <= 0
                || size as u64 > MAX_SHM
                || fd.metadata().map(|m| m.len()).unwrap_or(0) < size as u64
            {
                return Err(format!("shm pool of {size} bytes is invalid"));
            }
            if st.pools.len() >= MAX_IDS {
                return Err("too many shm pools".into());
            }
            let shm = st.ids.host(sender).ok_or("wl_shm without a host object")?;
            st.objects.insert(id, &WL_SHM_POOL_INTERFACE)?;
            if st.pool_keys.contains_key(&id) || st.ids.host(id).is_some() {
                return Err(format!("new object {id} is already in use"));
            }
            let key = st.next_pool;
            st.next_pool = st.next_pool.wrapping_add(1);
            st.pool_keys.insert(id, key);
            st.pools.insert(
                key,
                Pool {
                    fd,
                    size: size as u64,
                    shm,
                    destroyed: false,
                    buffers: 0,
                },
            );
            return Ok(());
        }
        ("wl_shm", "release") => {
            // Host pools of this app may still need it: the proxy keeps the host's.
            st.ids.adopt(sender);
            st.objects.remove(sender);
            local.extend(delete_id(sender));
            return Ok(());
        }
        ("wl_shm_pool", "resize") => {
            let size = int(&args, 0)?;
            let key = *st
                .pool_keys
                .get(&sender)
                .ok_or("resize of an unknown pool")?;
            let pool = st.pools.get_mut(&key).ok_or("resize of an unknown pool")?;
            if size <= 0
                || size as u64 > MAX_SHM
                || pool.fd.metadata().map(|m| m.len()).unwrap_or(0) < size as u64
            {
                return Err(format!("shm pool resize to {size} bytes is invalid"));
            }
            pool.size = size as u64;
            return Ok(());
        }
        ("wl_shm_pool", "destroy") => {
            if let Some(key) = st.pool_keys.remove(&sender) {
                if let Some(p) = st.pools.get_mut(&key) {
                    p.destroyed = true;
                }
                drop_pool_if_unused(st, key);
            }
            st.objects.remove(sender);
            local.extend(delete_id(sender));
            return Ok(());
        }
        ("wl_shm_pool", "create_buffer") => {
            return create_buffer(st, ch, sender, &args, host);
        }
        ("wl_buffer", "destroy") => {
            st.damage.remove_buffer(sender);
            if let Some(b) = st.buffers.remove(&sender) {
                if let Some(p) = st.pools.get_mut(&b.pool) {
                    p.buffers = p.buffers.saturating_sub(1);
                }
                drop_pool_if_unused(st, b.pool);
                st.retired.push(b.host);
            }
        }
        ("wl_surface", "destroy") => {
            if let Some(x) = st.x.as_mut() {
                x.surface_destroyed(sender, host);
            }
        }
        ("wl_surface", "commit") => {
            st.commits += 1;
            if let Some((id, r)) = st.damage.commit(sender) {
                st.copied +=
                    copy_damage(st, id, r).map_err(|err| format!("copying a commit: {err}"))?;
            }
        }
        (name, req) if st.damage.request(name, sender, req, &args)? => {}
        ("wl_data_offer" | "zwp_primary_selection_offer_v1", "receive") => {
            let fd = take_fd()?;
            // The host numbers its read pipes one up from the last; name the next one.
            st.next_read_pipe = st.next_read_pipe.wrapping_add(1);
            st.pipes.insert(st.next_read_pipe, fd).map_err(e)?;
            idents.push((st.next_read_pipe, ID_TYPE_READ_PIPE));
        }
        _ => {
            if desc.signature.contains(&ArgumentType::Fd) {
                return Err(format!(
                    "{}.{} carries a file descriptor the proxy does not translate",
                    iface.name, desc.name
                ));
            }
        }
    }
    translate_request(st, sender, desc, &args, &offsets, msg)?;
    host.push(msg, &idents);
    Ok(())
}

/// Rewrites a request for the host: the sender, object arguments and new ids (allocated
/// here) become host ids.
fn translate_request(
    st: &mut State,
    sender: u32,
    desc: &wayland_backend::protocol::MessageDesc,
    args: &[Arg],
    offsets: &[usize],
    msg: &mut [u8],
) -> Result<(), String> {
    let body = &mut msg[HEADER..];
    for (a, at) in args.iter().zip(offsets) {
        match a {
            Arg::NewId(id) => {
                let child = match desc.child_interface {
                    Some(c) => c,
                    None => {
                        // wl_registry.bind: the interface is named in the message.
                        let Some(Arg::Str(Some(name))) = args.get(1) else {
                            return Err("bind without an interface name".into());
                        };
                        let iface = allowed(name).ok_or_else(|| {
                            format!("bind of {name}, which the proxy does not offer")
                        })?;
                        if int(args, 2)? > iface.version as i64 {
                            return Err(format!("bind of {name} above version {}", iface.version));
                        }
                        iface
                    }
                };
                let h = st.ids.bind(*id)?;
                st.objects.insert(*id, child)?;
                wire::put_word(body, *at, h);
            }
            Arg::Object(id) => {
                let h = st
                    .ids
                    .host(*id)
                    .ok_or_else(|| format!("{}: unknown object {id}", desc.name))?;
                wire::put_word(body, *at, h);
            }
            _ => {}
        }
    }
    let h = st
        .ids
        .host(sender)
        .ok_or_else(|| format!("request to object {sender}, which the host does not have"))?;
    wire::put_word(msg, 0, h);
    Ok(())
}

/// wl_shm_pool.create_buffer: a host blob of the buffer's size, a host pool over it and the
/// host buffer in it, then that pool is destroyed (the buffer keeps the memory).
fn create_buffer(
    st: &mut State,
    ch: &Channel,
    sender: u32,
    args: &[Arg],
    host: &mut Outgoing,
) -> Result<(), String> {
    let id = object(args, 0)?;
    let layout = Layout::new(
        int(args, 1)?,
        int(args, 2)?,
        int(args, 3)?,
        int(args, 4)?,
        int(args, 5)? as u32,
    )?;
    let key = *st
        .pool_keys
        .get(&sender)
        .ok_or("buffer of an unknown pool")?;
    let pool = st.pools.get(&key).ok_or("buffer of an unknown pool")?;
    let bytes = layout
        .stride
        .checked_mul(layout.height)
        .filter(|b| *b as u64 <= MAX_SHM)
        .ok_or("buffer too large")?;
    let shm = pool.shm;
    let (w, h) = (layout.stride as u32, layout.height as u32);
    let (blob_id, size) = match st.image_reqs.get(&(w, h)) {
        Some(r) => *r,
        None => {
            let r = ch
                .image_requirements(w, h)
                .map_err(|err| format!("host image: {err}"))?;
            if st.image_reqs.len() >= 64 {
                st.image_reqs.clear();
            }
            st.image_reqs.insert((w, h), r);
            r
        }
    };
    let blob = ch
        .host_blob(
            blob_id,
            size,
            BLOB_FLAG_USE_MAPPABLE | BLOB_FLAG_USE_SHAREABLE,
        )
        .map_err(|err| format!("host blob: {err}"))?;
    let res = blob.blob.res_handle;
    st.objects.insert(id, &WL_BUFFER_INTERFACE)?;
    // Fresh host ids must be used in the order they were allocated: the pool first.
    let host_pool = st.ids.alloc()?;
    st.ids.ours.insert(host_pool);
    let host_buffer = st.ids.bind(id)?;
    let words = |w: &[u32]| -> Vec<u8> { w.iter().flat_map(|x| x.to_ne_bytes()).collect() };
    // wl_shm.create_pool(new_id, fd, size)
    host.push(
        &wire::message_bytes(shm, 0, &words(&[host_pool, bytes as u32])),
        &[(res, ID_TYPE_VIRTGPU_BLOB)],
    );
    // wl_shm_pool.create_buffer(new_id, offset 0, width, height, stride, format)
    host.push(
        &wire::message_bytes(
            host_pool,
            0,
            &words(&[
                host_buffer,
                0,
                layout.width as u32,
                layout.height as u32,
                layout.stride as u32,
                layout.format,
            ]),
        ),
        &[],
    );
    // wl_shm_pool.destroy
    host.push(&wire::message_bytes(host_pool, 1, &[]), &[]);
    if let Some(p) = st.pools.get_mut(&key) {
        p.buffers += 1;
    }
    st.buffers.insert(
        id,
        Buffer {
            pool: key,
            layout,
            host: blob,
        },
    );
    st.damage.add_buffer(id);
    Ok(())
}

fn drop_pool_if_unused(st: &mut State, key: u32) {
    if st
        .pools
        .get(&key)
        .is_some_and(|p| p.destroyed && p.buffers == 0)
    {
        st.pools.remove(&key);
    }
}

/// Copies what the host's copy of `buffer` lacks from the app's pool into its host blob.
/// Returns the bytes copied.
fn copy_damage(st: &State, buffer: u32, r: Rect) -> io::Result<u64> {
    let Some(b) = st.buffers.get(&buffer) else {
        return Ok(0);
    };
    let Some(pool) = st.pools.get(&b.pool) else {
        return Ok(0);
    };
    let Some(span) = b.layout.span(r, pool.size) else {
        return Ok(0);
    };
    let mut copied = 0;
    let map = b.host.map()?;
    let base = b.layout.offset as u64;
    for (at, len) in span.runs() {
        // pread straight into the host's memory: one copy, and an app that shrinks its
        // file gets a short read, not our SIGBUS.
        copied += map.fill_from((at - base) as usize, len as usize, &pool.fd, at)? as u64;
    }
    Ok(copied)
}

fn host_to_app(
    ch: &Channel,
    state: &Mutex<State>,
    out: &AppOut,
    stop: &OwnedFd,
    sending: &Sending,
    to_wm: Option<&(std::sync::mpsc::Sender<xroles::Notice>, OwnedFd)>,
) -> Result<(), String> {
    let poll_cmd = Header::new::<Header>(CMD_POLL, CHANNEL_RING, 0);
    let mut ring = vec![0u8; MAX_COMMAND];
    let mut buf: Vec<u8> = Vec::new();
    let mut pending = HostFds::default();
    loop {
        ch.gpu
            .execbuffer(poll_cmd.as_bytes(), &[], CHANNEL_RING)
            .map_err(|err| format!("poll: {err}"))?;
        loop {
            let mut fds = [
                PollFd::new(ch.gpu.event_fd(), PollFlags::POLLIN),
                PollFd::new(stop.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => return Err(err.to_string()),
            }
            if fds[1].any().unwrap_or(false) {
                return Ok(());
            }
            if fds[0].any().unwrap_or(false) && ch.gpu.read_events().map_err(e)? > 0 {
                break;
            }
        }
        ch.channel.map.read(0, &mut ring).map_err(e)?;
        let (hdr, _) = Header::read_from_prefix(&ring[..]).map_err(|_| "short ring message")?;
        match hdr.cmd {
            CMD_RECEIVE => {
                let (rx, _) =
                    SendReceive::read_from_prefix(&ring[..]).map_err(|_| "short RECEIVE")?;
                let n = rx.num_identifiers as usize;
                let size = rx.opaque_data_size as usize;
                if n > MAX_IDENTIFIERS || size > MAX_SEND_DATA {
                    return Err(format!(
                        "the host sent {n} fds and {size} bytes in one message"
                    ));
                }
                if n == 0 && size == 0 {
                    return Ok(()); // the host hung up
                }
                for i in 0..n {
                    pending.fds.push(host_fd(
                        ch,
                        rx.identifiers[i],
                        rx.identifier_types[i],
                        rx.identifier_sizes[i],
                    )?);
                }
                let start = std::mem::size_of::<SendReceive>();
                buf.extend_from_slice(&ring[start..start + size]);
                let mut wl = Vec::new();
                wire::drain_messages(&mut buf, |sender, opcode, msg| {
                    event(&mut lock(state), sender, opcode, msg, &mut wl, &mut pending)
                })?;
                if pending.fds.len() > fdpass::MAX_FDS {
                    return Err("the host sent too many file descriptors".into());
                }
                if !wl.is_empty() {
                    // The app's fds; those after them are for messages still to come.
                    let later = pending
                        .fds
                        .split_off(pending.forwarded.min(pending.fds.len()));
                    to_app(out, &wl, &pending.fds).map_err(|err| format!("app: {err}"))?;
                    pending = HostFds {
                        fds: later,
                        forwarded: 0,
                    };
                }
                if let Some(to_wm) = to_wm {
                    answer_x(state, ch, sending, to_wm)?;
                }
            }
            CMD_READ => {
                let (rd, _) = ReadWrite::read_from_prefix(&ring[..]).map_err(|_| "short READ")?;
                let size = rd.opaque_data_size as usize;
                if size > MAX_WRITE_DATA {
                    return Err(format!("the host sent {size} pipe bytes in one message"));
                }
                let start = std::mem::size_of::<ReadWrite>();
                let mut st = lock(state);
                if size > 0 {
                    st.pipes.deliver(rd.identifier, &ring[start..start + size]);
                }
                if rd.hang_up != 0 {
                    st.pipes.close(rd.identifier);
                }
            }
            other => return Err(format!("the host sent ring command {other}")),
        }
    }
}

/// An fd the host sent, for the app: blobs become sealed memfds, write pipes local pipes whose
/// data goes to the host with WRITE.
fn host_fd(ch: &Channel, id: u32, kind: u32, size: u32) -> Result<OwnedFd, String> {
    match kind {
        ID_TYPE_VIRTGPU_BLOB => {
            if size as usize > MAX_BLOB {
                return Err(format!("the host sent a blob of {size} bytes"));
            }
            let blob = ch
                .host_blob(id, size as u64, BLOB_FLAG_USE_MAPPABLE)
                .map_err(|err| format!("host blob: {err}"))?;
            let mut data = vec![0u8; size as usize];
            blob.map().and_then(|m| m.read(0, &mut data)).map_err(e)?;
            sealed_memfd(&data).map_err(e)
        }
        ID_TYPE_WRITE_PIPE => {
            let (r, w) = nix::unistd::pipe().map_err(|err| err.to_string())?;
            let gpu = ch.gpu.clone();
            std::thread::spawn(move || {
                pump(File::from(r), MAX_WRITE_DATA, |data| {
                    Channel::write_pipe(&*gpu, id, data, data.is_empty())
                })
            });
            Ok(w)
        }
        other => Err(format!(
            "the host sent a file descriptor of type {other}, which apps here do not take"
        )),
    }
}

/// The fds the host sent, in the order of the messages they came with: those of messages for
/// the app go to it with them; those of events to the proxy's own objects are taken out.
#[derive(Default)]
struct HostFds {
    fds: Vec<OwnedFd>,
    /// How many at the front belong to messages already forwarded to the app.
    forwarded: usize,
}

impl HostFds {
    fn take(&mut self) -> Result<OwnedFd, String> {
        if self.forwarded < self.fds.len() {
            Ok(self.fds.remove(self.forwarded))
        } else {
            Err("an event to the proxy without its file descriptor".into())
        }
    }
}

/// Handles one event from the host: ids back to the app's, bookkeeping, the globals filter.
/// Appends what to forward.
fn event(
    st: &mut State,
    sender: u32,
    opcode: u16,
    msg: &mut [u8],
    out: &mut Vec<u8>,
    fds: &mut HostFds,
) -> Result<(), String> {
    if st.ids.ours.contains(&sender) || st.x.as_ref().is_some_and(|x| x.handles(sender)) {
        // To the proxy's own objects: nothing an app needs (roles and selections of X
        // windows answer).
        if let Some(x) = st.x.as_mut() {
            x.event(sender, opcode, msg, &mut || fds.take())?;
        }
        return Ok(());
    }
    let app_sender = st
        .ids
        .app(sender)
        .ok_or_else(|| format!("event from unknown object {sender}"))?;
    let iface = st
        .objects
        .get(app_sender)
        .ok_or_else(|| format!("event from unknown object {app_sender}"))?;
    let desc = wire::message(iface, opcode, false)?;
    let (args, offsets) = wire::parse_args_at(desc.signature, &msg[HEADER..])?;
    if (iface.name, desc.name) == ("wl_display", "error") {
        let text = match args.get(2) {
            Some(Arg::Str(Some(t))) => t.clone(),
            _ => String::new(),
        };
        let on = object(&args, 0)?;
        if st.ids.app(on).is_none() {
            return Err(format!(
                "the compositor refused the proxy's request: {text}"
            ));
        }
    }
    let body = &mut msg[HEADER..];
    for (a, at) in args.iter().zip(&offsets) {
        match a {
            Arg::NewId(id) => {
                if *id < SERVER_IDS {
                    return Err(format!(
                        "the host created object {id} in the app's id range"
                    ));
                }
                let child = desc
                    .child_interface
                    .ok_or("the host created an object of no known interface")?;
                st.objects.insert(*id, child)?;
            }
            Arg::Object(id) => {
                let a = st
                    .ids
                    .app(*id)
                    .ok_or_else(|| format!("{}.{}: unknown object {id}", iface.name, desc.name))?;
                wire::put_word(body, *at, a);
            }
            _ => {}
        }
    }
    if let Some(x) = st.x.as_mut() {
        match (iface.name, desc.name) {
            ("wl_registry", "global") => x.global(sender, &args),
            ("wl_keyboard", "enter") => x
                .keyboard(Some(object(&args, 1).and_then(|h| {
                    st.ids.app(h).ok_or_else(|| "unknown surface".to_string())
                })?)),
            ("wl_keyboard", "leave") => x.keyboard(None),
            ("wl_pointer", "enter") => x
                .pointer(Some(object(&args, 1).and_then(|h| {
                    st.ids.app(h).ok_or_else(|| "unknown surface".to_string())
                })?)),
            ("wl_pointer", "leave") => x.pointer(None),
            _ => {}
        }
        // Input serials, which the proxy's set_selection quotes.
        if let ("wl_keyboard", "enter" | "key") | ("wl_pointer", "enter" | "button") =
            (iface.name, desc.name)
        {
            if let Some(Arg::Uint(serial)) = args.first() {
                x.sel.input_serial(*serial);
            }
        }
    }
    match (iface.name, desc.name) {
        ("wl_registry", "global") if !filter_global(&args, msg)? => {
            return Ok(()); // not shown to apps
        }
        ("wl_display", "delete_id") => {
            let Some(Arg::Uint(host)) = args.first() else {
                return Err("argument type mismatch".into());
            };
            if let Some(x) = st.x.as_mut() {
                x.sel.forget(*host);
            }
            let Some(app) = st.ids.deleted(*host) else {
                return Ok(()); // one of the proxy's own
            };
            st.objects.remove(app);
            wire::put_word(&mut msg[HEADER..], offsets[0], app);
        }
        _ => {}
    }
    wire::put_word(msg, 0, app_sender);
    out.extend_from_slice(msg);
    fds.forwarded += desc
        .signature
        .iter()
        .filter(|a| matches!(a, ArgumentType::Fd))
        .count();
    Ok(())
}

/// Sends what the proxy answers for X windows' roles (pongs, acks) and tells the window
/// manager what it must hear.
fn answer_x(
    state: &Mutex<State>,
    ch: &Channel,
    sending: &Sending,
    (notices, wake): &(std::sync::mpsc::Sender<xroles::Notice>, OwnedFd),
) -> Result<(), String> {
    let _turn = sending.lock().unwrap_or_else(|e| e.into_inner());
    let mut host = Outgoing::default();
    let told = {
        let mut st = lock(state);
        let st = &mut *st;
        let Some(x) = st.x.as_mut() else {
            return Ok(());
        };
        for r in std::mem::take(&mut x.replies) {
            host.push(&r, &[]);
        }
        // The selection devices, once the globals they need are known.
        x.sel.ensure(&mut st.ids, &mut host)?;
        std::mem::take(&mut x.notices)
    };
    for (data, idents) in &host.sends {
        ch.send(data, idents)
            .map_err(|err| format!("host: {err}"))?;
    }
    if !told.is_empty() {
        for n in told {
            // The window manager may be gone: then nobody needs to hear it.
            let _ = notices.send(n);
        }
        let _ = nix::unistd::write(wake, &[1]);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
