//! `bulkhead-wl-proxy`, the guest side of the vsock graphics transport.
//!
//! Apps in the guest connect to the proxy's `wayland-0`; for each, the proxy opens a stream to
//! the host (vsock port [`WAYLAND_PORT`], where the per-VM bridge connects it to the VM's
//! Wayland socket) and relays the protocol in both directions. It parses every message by the
//! interface descriptions of the globals it offers, tracks objects, replaces file descriptors
//! by stream records (see `bulkhead_ipc::wlstream`) and sends shared-memory contents as the
//! damaged rectangles of each commit. Globals it does not handle are never shown to apps. A
//! malformed message from either side ends that app's connection; the proxy carries on.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::socket::sockopt;

use bulkhead_ipc::wlstream::{
    fdpass, pump_pipe, shm_write_head, Pipes, Record, MAX_CHUNK, MAX_IDS, MAX_SHM, MAX_SHM_CHUNK,
    STREAM_VERSION, WAYLAND_PORT,
};
use wayland_backend::protocol::Interface;
use wayland_client::protocol::__interfaces::*;
use wayland_protocols::wp::content_type::v1::client::__interfaces::WP_CONTENT_TYPE_MANAGER_V1_INTERFACE;
use wayland_protocols::wp::cursor_shape::v1::client::__interfaces::WP_CURSOR_SHAPE_MANAGER_V1_INTERFACE;
use wayland_protocols::wp::fractional_scale::v1::client::__interfaces::WP_FRACTIONAL_SCALE_MANAGER_V1_INTERFACE;
use wayland_protocols::wp::idle_inhibit::zv1::client::__interfaces::ZWP_IDLE_INHIBIT_MANAGER_V1_INTERFACE;
use wayland_protocols::wp::pointer_constraints::zv1::client::__interfaces::ZWP_POINTER_CONSTRAINTS_V1_INTERFACE;
use wayland_protocols::wp::presentation_time::client::__interfaces::WP_PRESENTATION_INTERFACE;
use wayland_protocols::wp::primary_selection::zv1::client::__interfaces::ZWP_PRIMARY_SELECTION_DEVICE_MANAGER_V1_INTERFACE;
use wayland_protocols::wp::relative_pointer::zv1::client::__interfaces::ZWP_RELATIVE_POINTER_MANAGER_V1_INTERFACE;
use wayland_protocols::wp::single_pixel_buffer::v1::client::__interfaces::WP_SINGLE_PIXEL_BUFFER_MANAGER_V1_INTERFACE;
use wayland_protocols::wp::viewporter::client::__interfaces::WP_VIEWPORTER_INTERFACE;
use wayland_protocols::xdg::activation::v1::client::__interfaces::XDG_ACTIVATION_V1_INTERFACE;
use wayland_protocols::xdg::decoration::zv1::client::__interfaces::ZXDG_DECORATION_MANAGER_V1_INTERFACE;
use wayland_protocols::xdg::shell::client::__interfaces::XDG_WM_BASE_INTERFACE;
use wayland_protocols::xdg::xdg_output::zv1::client::__interfaces::ZXDG_OUTPUT_MANAGER_V1_INTERFACE;
use wayland_protocols_plasma::server_decoration::client::__interfaces::ORG_KDE_KWIN_SERVER_DECORATION_MANAGER_INTERFACE;

use crate::shm::{Damage, Layout, Rect};
use crate::wire::{self, int, object, Arg, Objects, HEADER};

/// The globals apps see, at most at these versions: those whose every message the proxy
/// understands (the rest of each protocol comes in as their child interfaces).
pub static ALLOWED: &[&Interface] = &[
    &WL_COMPOSITOR_INTERFACE,
    &WL_SUBCOMPOSITOR_INTERFACE,
    &WL_SHM_INTERFACE,
    &WL_SEAT_INTERFACE,
    &WL_OUTPUT_INTERFACE,
    &WL_DATA_DEVICE_MANAGER_INTERFACE,
    &XDG_WM_BASE_INTERFACE,
    &ZXDG_DECORATION_MANAGER_V1_INTERFACE,
    // GTK 3 knows only KDE's protocol for server-side decorations: without it every GTK 3
    // app draws a second title bar inside ours.
    &ORG_KDE_KWIN_SERVER_DECORATION_MANAGER_INTERFACE,
    &ZXDG_OUTPUT_MANAGER_V1_INTERFACE,
    // Middle-click paste inside the domain (its offers' receive carries a pipe, translated
    // like the clipboard's).
    &ZWP_PRIMARY_SELECTION_DEVICE_MANAGER_V1_INTERFACE,
    // A viewport makes the proxy copy a surface's whole buffer on surface damage.
    &WP_VIEWPORTER_INTERFACE,
    &WP_FRACTIONAL_SCALE_MANAGER_V1_INTERFACE,
    &WP_PRESENTATION_INTERFACE,
    &WP_CURSOR_SHAPE_MANAGER_V1_INTERFACE,
    &ZWP_RELATIVE_POINTER_MANAGER_V1_INTERFACE,
    // Locks and confinements hold only where the compositor allows them (its focused window).
    &ZWP_POINTER_CONSTRAINTS_V1_INTERFACE,
    &XDG_ACTIVATION_V1_INTERFACE,
    &ZWP_IDLE_INHIBIT_MANAGER_V1_INTERFACE,
    // Buffers of one colour: no memory crosses, the host makes the buffer from four values.
    &WP_SINGLE_PIXEL_BUFFER_MANAGER_V1_INTERFACE,
    &WP_CONTENT_TYPE_MANAGER_V1_INTERFACE,
];

pub(crate) fn allowed(name: &str) -> Option<&'static Interface> {
    ALLOWED.iter().copied().find(|i| i.name == name)
}

/// Where the host end of the stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEndpoint {
    /// vsock to the host (CID 2), the real transport.
    Vsock { port: u32 },
    /// A Unix socket (tests, and a bridge on the same machine).
    Unix(PathBuf),
}

impl Default for HostEndpoint {
    fn default() -> Self {
        HostEndpoint::Vsock { port: WAYLAND_PORT }
    }
}

/// The stream to the host.
enum Host {
    Unix(UnixStream),
    Vsock(vsock::VsockStream),
}

impl Host {
    fn connect(ep: &HostEndpoint) -> io::Result<Host> {
        Ok(match ep {
            HostEndpoint::Unix(p) => {
                let s = UnixStream::connect(p)?;
                // Room for half a 1080p frame in flight: the sender blocks, and the bridge
                // wakes it, less often. The kernel caps it at net.core.wmem_max; a refusal
                // only costs speed.
                let _ = nix::sys::socket::setsockopt(&s, sockopt::SndBuf, &(4 << 20));
                Host::Unix(s)
            }
            HostEndpoint::Vsock { port } => Host::Vsock(vsock::VsockStream::connect(
                &vsock::VsockAddr::new(libc::VMADDR_CID_HOST, *port),
            )?),
        })
    }

    fn try_clone(&self) -> io::Result<Host> {
        Ok(match self {
            Host::Unix(s) => Host::Unix(s.try_clone()?),
            Host::Vsock(s) => Host::Vsock(s.try_clone()?),
        })
    }

    fn shutdown(&self) {
        let _ = match self {
            Host::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Host::Vsock(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl AsFd for Host {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Host::Unix(s) => s.as_fd(),
            Host::Vsock(s) => s.as_fd(),
        }
    }
}

impl Read for Host {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Host::Unix(s) => s.read(buf),
            Host::Vsock(s) => s.read(buf),
        }
    }
}

impl Write for Host {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Host::Unix(s) => s.write(buf),
            Host::Vsock(s) => s.write(buf),
        }
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Host::Unix(s) => s.write_vectored(bufs),
            // (The vsock crate's stream writes only the first buffer of a vectored write.)
            Host::Vsock(s) => nix::sys::uio::writev(&*s, bufs).map_err(io::Error::from),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Listens on `socket` and relays every app that connects over the vsock stream transport.
/// Runs until the listener fails.
pub fn serve(socket: &std::path::Path, host: HostEndpoint) -> io::Result<()> {
    listen(socket, move |app| relay(app, &host))
}

/// Listens on `socket` and runs `relay` on its own thread for every app that connects.
pub fn listen(
    socket: &std::path::Path,
    relay: impl Fn(UnixStream) -> Result<(), String> + Send + Sync + 'static,
) -> io::Result<()> {
    // Bound under a temporary name and renamed once listening: the socket's path appears only
    // when a connect can succeed (between bind and listen it would be refused, and the agent
    // starts apps as soon as the path exists).
    let name = socket.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the socket path has no file name",
        )
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = socket.with_file_name(tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    std::fs::rename(&tmp, socket)?;
    eprintln!("bulkhead-wl-proxy: apps connect to {}", socket.display());
    let relay = Arc::new(relay);
    for app in listener.incoming() {
        let app = match app {
            Ok(a) => a,
            Err(e) => {
                eprintln!("bulkhead-wl-proxy: accept: {e}");
                continue;
            }
        };
        let relay = relay.clone();
        std::thread::spawn(move || {
            if let Err(e) = relay(app) {
                eprintln!("bulkhead-wl-proxy: app dropped: {e}");
            }
        });
    }
    Ok(())
}

struct Pool {
    /// The app's file, shared with the records that send from it.
    fd: Arc<File>,
    size: u64,
    destroyed: bool,
    buffers: u32,
}

struct Buffer {
    pool: u32,
    layout: Layout,
}

/// What one app connection knows; shared by its two directions.
pub(crate) struct State {
    objects: Objects,
    /// Pools by our own key: a client may destroy a pool (its buffers live on) and reuse the
    /// object id for a new one.
    pools: HashMap<u32, Pool>,
    pool_keys: HashMap<u32, u32>,
    next_pool: u32,
    buffers: HashMap<u32, Buffer>,
    damage: Damage,
    /// App fds that data from the host goes into (wl_data_offer.receive).
    pipes: Pipes,
}

impl State {
    pub(crate) fn new() -> State {
        State {
            objects: Objects::new(&WL_DISPLAY_INTERFACE),
            pools: HashMap::new(),
            pool_keys: HashMap::new(),
            next_pool: 1,
            buffers: HashMap::new(),
            damage: Damage::default(),
            pipes: Pipes::default(),
        }
    }

    /// The app's objects as the proxy tracks them (the fuzz checks bound them).
    pub(crate) fn objects(&self) -> &Objects {
        &self.objects
    }
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// The stream to the host, shared by the app's two directions and its pipe pumps, with what
/// went through it (logged when the app goes; the forwarding benchmark reads it).
struct Sink {
    host: Host,
    bytes: u64,
    commits: u64,
}

type Writer = Arc<Mutex<Sink>>;

/// The most buffers one writev takes (the kernel's UIO_MAXIOV).
const MAX_IOV: usize = 1024;

/// What goes to the host for a request, in order: records, and shm rectangles that are sent
/// from the app's pool as they go out.
#[derive(Debug)]
pub(crate) enum Out {
    Record(Record),
    FromPool(PoolChunk),
}

/// A [`Record::ShmWrite`] of `len` bytes (at most [`MAX_SHM_CHUNK`]) at `offset` of the app's
/// pool, for the host's pool `id`; its data is read when it is sent.
#[derive(Debug)]
pub(crate) struct PoolChunk {
    id: u32,
    offset: u64,
    len: usize,
    file: Arc<File>,
}

impl From<Record> for Out {
    fn from(r: Record) -> Out {
        Out::Record(r)
    }
}

impl Out {
    /// The record the host receives, the pool's bytes read now (for tests and fuzz checks).
    pub(crate) fn to_record(&self) -> Record {
        match self {
            Out::Record(r) => r.clone(),
            Out::FromPool(c) => {
                let mut data = vec![0u8; c.len];
                let mut got = 0;
                while got < c.len {
                    match c.file.read_at(&mut data[got..], c.offset + got as u64) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got += n,
                    }
                }
                Record::ShmWrite {
                    id: c.id,
                    offset: c.offset,
                    data,
                }
            }
        }
    }
}

/// Sends `records` in one vectored write (pipe data, the host's direction's replies).
fn send_records(w: &Writer, records: &[Record]) -> io::Result<()> {
    send(w, records.iter().map(Part::Record))
}

/// Sends what a batch of requests produced.
fn send_out(w: &Writer, out: &[Out]) -> io::Result<()> {
    send(
        w,
        out.iter().map(|o| match o {
            Out::Record(r) => Part::Record(r),
            Out::FromPool(c) => Part::Pool(c),
        }),
    )
}

enum Part<'a> {
    Record(&'a Record),
    Pool(&'a PoolChunk),
}

/// Sends records in vectored writes, their heads from one small buffer and their data where
/// it lies; shm rectangles go from the app's pool to the stream with sendfile, which on a
/// Unix socket passes the pages by reference (no copy on this side at all) and on vsock
/// copies once, where a read and a write copied twice.
fn send<'a>(w: &Writer, parts: impl Iterator<Item = Part<'a>>) -> io::Result<()> {
    let parts: Vec<Part> = parts.collect();
    let mut heads = Vec::with_capacity(parts.len() * 20);
    let mut framed = Vec::with_capacity(parts.len());
    for p in &parts {
        let start = heads.len();
        let data = match p {
            Part::Record(r) => r.encode_head_into(&mut heads)?,
            Part::Pool(c) => {
                heads.extend(shm_write_head(c.id, c.offset, c.len)?);
                &[]
            }
        };
        framed.push((start..heads.len(), data));
    }
    let mut sink = w.lock().unwrap_or_else(|e| e.into_inner());
    let mut slices = Vec::with_capacity(framed.len() * 2);
    for (p, (head, data)) in parts.iter().zip(&framed) {
        slices.push(IoSlice::new(&heads[head.clone()]));
        if !data.is_empty() {
            slices.push(IoSlice::new(data));
        }
        sink.bytes += (head.len() + data.len()) as u64;
        if let Part::Pool(c) = p {
            write_all_vectored(&mut sink.host, &mut slices)?;
            slices.clear();
            send_from_file(&mut sink.host, &c.file, c.offset, c.len)?;
            sink.bytes += c.len as u64;
        }
    }
    write_all_vectored(&mut sink.host, &mut slices)
}

/// Sends `len` bytes of `file` at `offset`, whose record head is already out. An app that
/// shrank its pool under us gets zeros for what is gone (the record stays whole; its pixels
/// are its own business); only an error of the stream itself is an error.
fn send_from_file(out: &mut Host, file: &File, offset: u64, len: usize) -> io::Result<()> {
    use nix::errno::Errno;
    let mut at = i64::try_from(offset).map_err(io::Error::other)?;
    let mut left = len;
    while left > 0 {
        match nix::sys::sendfile::sendfile64(&*out, file, Some(&mut at), left) {
            Ok(0) => break,
            Ok(n) => left -= n.min(left),
            Err(Errno::EINTR) => {}
            // The file's doing or the stream's: the zeros' write below tells which.
            Err(_) => break,
        }
    }
    static ZEROS: [u8; 4096] = [0; 4096];
    while left > 0 {
        let n = left.min(ZEROS.len());
        out.write_all(&ZEROS[..n])?;
        left -= n;
    }
    Ok(())
}

/// Writes every byte of `bufs` (std's write_all_vectored is not stable).
fn write_all_vectored(out: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        let n = bufs.len().min(MAX_IOV);
        match out.write_vectored(&bufs[..n]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut bufs, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Relays one app until either side ends or breaks the protocol.
pub fn relay(app: UnixStream, ep: &HostEndpoint) -> Result<(), String> {
    let mut host = Host::connect(ep).map_err(|e| format!("cannot reach the host: {e}"))?;
    Record::Hello {
        version: STREAM_VERSION,
    }
    .write(&mut host)
    .map_err(|e| e.to_string())?;
    match Record::read(&mut host).map_err(|e| e.to_string())? {
        Some(Record::Hello { version }) if version == STREAM_VERSION => {}
        Some(Record::Hello { version }) => {
            return Err(format!(
                "the host's bulkhead-wl-bridge speaks stream version {version}, this proxy \
                 {STREAM_VERSION}: both must be of one release"
            ))
        }
        None => {
            return Err(format!(
                "the host closed the stream before its hello (a bridge of another stream \
                 version than this proxy's {STREAM_VERSION} may)"
            ))
        }
        other => return Err(format!("the host answered {other:?} instead of hello")),
    }
    let state = Arc::new(Mutex::new(State::new()));
    let reader = host.try_clone().map_err(|e| e.to_string())?;
    let writer: Writer = Arc::new(Mutex::new(Sink {
        host: host.try_clone().map_err(|e| e.to_string())?,
        bytes: 0,
        commits: 0,
    }));
    let app2 = app.try_clone().map_err(|e| e.to_string())?;
    let (s2, w2) = (state.clone(), writer.clone());
    let down = std::thread::spawn(move || {
        let r = host_to_app(reader, &app2, &s2, &w2);
        let _ = app2.shutdown(std::net::Shutdown::Both);
        r
    });
    let up = app_to_host(&app, &state, &writer);
    host.shutdown();
    let _ = app.shutdown(std::net::Shutdown::Both);
    let down = down
        .join()
        .unwrap_or_else(|_| Err("relay thread panicked".into()));
    if let Ok(sink) = writer.lock() {
        eprintln!(
            "bulkhead-wl-proxy: app done: {} commits, {} bytes sent to the host",
            sink.commits, sink.bytes
        );
    }
    up.and(down)
}

fn app_to_host(app: &UnixStream, state: &Mutex<State>, w: &Writer) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::new();
    let mut fds: VecDeque<OwnedFd> = VecDeque::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let mut new_fds = Vec::new();
        let n = fdpass::recv(app, &mut chunk, &mut new_fds).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        fds.extend(new_fds);
        if fds.len() > 4 * fdpass::MAX_FDS {
            return Err("the app sent file descriptors without messages".into());
        }
        let mut out = Batch::default();
        let mut wl: Vec<u8> = Vec::new();
        while let Some((sender, opcode, len)) = wire::next_message(&buf)? {
            let mut pre = Vec::new();
            if is_commit(state, sender, opcode) {
                if let Ok(mut sink) = w.lock() {
                    sink.commits += 1;
                }
            }
            request(
                &mut lock(state),
                sender,
                opcode,
                &buf[HEADER..len],
                &mut fds,
                &mut pre,
            )?;
            if !pre.is_empty() {
                // Records for this message go before its bytes, after everything earlier.
                if !wl.is_empty() {
                    out.wayland(std::mem::take(&mut wl));
                }
                out.extend(pre);
            }
            wl.extend_from_slice(&buf[..len]);
            buf.drain(..len);
            if wl.len() > MAX_CHUNK - wire::MAX_MESSAGE {
                out.wayland(std::mem::take(&mut wl));
            }
        }
        if !wl.is_empty() {
            out.wayland(wl);
        }
        send_out(w, &out.records).map_err(|e| format!("host: {e}"))?;
    }
}

/// Records for the host, counting the descriptors the next Wayland bytes carry.
#[derive(Default)]
struct Batch {
    records: Vec<Out>,
    fds: u8,
}

impl Batch {
    fn extend(&mut self, records: Vec<Out>) {
        for r in records {
            if matches!(&r, Out::Record(r) if r.stands_for_fd()) {
                self.fds = self.fds.saturating_add(1);
            }
            self.records.push(r);
        }
    }

    /// Wayland bytes, declaring the descriptors of the records since the last ones.
    fn wayland(&mut self, data: Vec<u8>) {
        self.records.push(Out::Record(Record::Wl {
            fds: std::mem::take(&mut self.fds),
            data,
        }));
    }
}

/// Whether a message is a wl_surface.commit (counted for the benchmark).
fn is_commit(state: &Mutex<State>, sender: u32, opcode: u16) -> bool {
    lock(state).objects.get(sender).is_some_and(|i| {
        i.name == "wl_surface"
            && i.requests
                .get(opcode as usize)
                .is_some_and(|m| m.name == "commit")
    })
}

/// Size of the file behind `fd`.
fn file_size(f: &File) -> u64 {
    f.metadata().map(|m| m.len()).unwrap_or(0)
}

/// Handles one request from the app: object bookkeeping, fd translation, shm copies.
pub(crate) fn request(
    st: &mut State,
    sender: u32,
    opcode: u16,
    body: &[u8],
    fds: &mut VecDeque<OwnedFd>,
    pre: &mut Vec<Out>,
) -> Result<(), String> {
    let iface = st
        .objects
        .get(sender)
        .ok_or_else(|| format!("request to unknown object {sender}"))?;
    let desc = wire::message(iface, opcode, true)?;
    let args = wire::parse_args(desc.signature, body)?;
    for a in &args {
        if let Arg::NewId(id) = a {
            let child = match desc.child_interface {
                Some(c) => c,
                None => {
                    // wl_registry.bind: the interface is named in the message.
                    let Some(Arg::Str(Some(name))) = args.get(1) else {
                        return Err("bind without an interface name".into());
                    };
                    let iface = allowed(name)
                        .ok_or_else(|| format!("bind of {name}, which the proxy does not offer"))?;
                    if int(&args, 2)? > iface.version as i64 {
                        return Err(format!("bind of {name} above version {}", iface.version));
                    }
                    iface
                }
            };
            st.objects.insert(*id, child)?;
        }
    }
    let take_fd = |fds: &mut VecDeque<OwnedFd>| -> Result<File, String> {
        fds.pop_front()
            .map(File::from)
            .ok_or_else(|| format!("{}.{} without its file descriptor", iface.name, desc.name))
    };
    match (iface.name, desc.name) {
        ("wl_shm", "create_pool") => {
            let id = object(&args, 0)?;
            let fd = take_fd(fds)?;
            let size = int(&args, 2)?;
            if size <= 0 || size as u64 > MAX_SHM || file_size(&fd) < size as u64 {
                return Err(format!("shm pool of {size} bytes is invalid"));
            }
            if st.pools.len() >= MAX_IDS {
                return Err("too many shm pools".into());
            }
            let key = st.next_pool;
            st.next_pool = st.next_pool.wrapping_add(1);
            st.pool_keys.insert(id, key);
            st.pools.insert(
                key,
                Pool {
                    fd: Arc::new(fd),
                    size: size as u64,
                    destroyed: false,
                    buffers: 0,
                },
            );
            pre.push(Out::Record(Record::ShmNew {
                id: key,
                size: size as u64,
            }));
        }
        ("wl_shm_pool", "resize") => {
            let size = int(&args, 0)?;
            let key = *st
                .pool_keys
                .get(&sender)
                .ok_or("resize of an unknown pool")?;
            let pool = st.pools.get_mut(&key).ok_or("resize of an unknown pool")?;
            if size <= 0 || size as u64 > MAX_SHM || file_size(&pool.fd) < size as u64 {
                return Err(format!("shm pool resize to {size} bytes is invalid"));
            }
            pool.size = size as u64;
            pre.push(Out::Record(Record::ShmResize {
                id: key,
                size: size as u64,
            }));
        }
        ("wl_shm_pool", "create_buffer") => {
            let id = object(&args, 0)?;
            let layout = Layout::new(
                int(&args, 1)?,
                int(&args, 2)?,
                int(&args, 3)?,
                int(&args, 4)?,
                int(&args, 5)? as u32,
            )?;
            let key = *st
                .pool_keys
                .get(&sender)
                .ok_or("buffer of an unknown pool")?;
            let pool = st.pools.get_mut(&key).ok_or("buffer of an unknown pool")?;
            pool.buffers += 1;
            st.buffers.insert(id, Buffer { pool: key, layout });
            st.damage.add_buffer(id);
        }
        ("wl_shm_pool", "destroy") => {
            if let Some(key) = st.pool_keys.remove(&sender) {
                if let Some(p) = st.pools.get_mut(&key) {
                    p.destroyed = true;
                }
                drop_pool_if_unused(st, key, pre);
            }
        }
        ("wl_buffer", "destroy") => {
            st.damage.remove_buffer(sender);
            if let Some(b) = st.buffers.remove(&sender) {
                if let Some(p) = st.pools.get_mut(&b.pool) {
                    p.buffers = p.buffers.saturating_sub(1);
                }
                drop_pool_if_unused(st, b.pool, pre);
            }
        }
        ("wl_surface", "commit") => {
            if let Some((id, r)) = st.damage.commit(sender) {
                if let Some(b) = st.buffers.get(&id) {
                    if let Some(pool) = st.pools.get(&b.pool) {
                        copy_rect(pool, b, r, pre);
                    }
                }
            }
        }
        (name, req) if st.damage.request(name, sender, req, &args)? => {}
        ("wl_data_offer" | "zwp_primary_selection_offer_v1", "receive") => {
            let fd = take_fd(fds)?;
            let id = st.pipes.add(fd).map_err(|e| e.to_string())?;
            pre.push(Out::Record(Record::PipeWrite { id }));
        }
        _ => {
            if desc
                .signature
                .contains(&wayland_backend::protocol::ArgumentType::Fd)
            {
                return Err(format!(
                    "{}.{} carries a file descriptor the proxy does not translate",
                    iface.name, desc.name
                ));
            }
        }
    }
    Ok(())
}

fn drop_pool_if_unused(st: &mut State, id: u32, pre: &mut Vec<Out>) {
    if st
        .pools
        .get(&id)
        .is_some_and(|p| p.destroyed && p.buffers == 0)
    {
        st.pools.remove(&id);
        pre.push(Out::Record(Record::ShmDrop { id }));
    }
}

/// Queues a rectangle of a buffer for the host, in chunks its records carry; the bytes are
/// read from the app's pool as they are sent.
fn copy_rect(pool: &Pool, b: &Buffer, r: Rect, pre: &mut Vec<Out>) {
    let Some(span) = b.layout.span(r, pool.size) else {
        return;
    };
    for (at, len) in span.runs() {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(MAX_SHM_CHUNK as u64);
            pre.push(Out::FromPool(PoolChunk {
                id: b.pool,
                offset: at + done,
                len: n as usize,
                file: pool.fd.clone(),
            }));
            done += n;
        }
    }
}

fn host_to_app(
    mut host: Host,
    app: &UnixStream,
    state: &Arc<Mutex<State>>,
    w: &Writer,
) -> Result<(), String> {
    let mut buf: Vec<u8> = Vec::new();
    let mut pending: Vec<OwnedFd> = Vec::new();
    loop {
        let rec = match Record::read(&mut host).map_err(|e| format!("host: {e}"))? {
            Some(r) => r,
            None => return Ok(()),
        };
        if rec.stands_for_fd() && pending.len() >= fdpass::MAX_FDS {
            return Err("the host sent too many file descriptors".into());
        }
        match rec {
            Record::Blob(data) => pending.push(sealed_memfd(&data).map_err(|e| e.to_string())?),
            Record::PipeWrite { id } => {
                let (r, wr) = nix::unistd::pipe().map_err(|e| e.to_string())?;
                pending.push(wr);
                let w = w.clone();
                std::thread::spawn(move || {
                    pump_pipe(File::from(r), id, |recs| send_records(&w, recs))
                });
            }
            Record::PipeData { id, data } => lock(state).pipes.deliver(id, &data),
            Record::PipeClose { id } => lock(state).pipes.close(id),
            Record::Wl { fds, data } => {
                if usize::from(fds) != pending.len() {
                    return Err(format!(
                        "the host's Wayland bytes declare {fds} file descriptors, but {} wait \
                         to be attached",
                        pending.len()
                    ));
                }
                buf.extend_from_slice(&data);
                let mut out = Vec::new();
                wire::drain_messages(&mut buf, |sender, opcode, msg| {
                    event(&mut lock(state), sender, opcode, msg, &mut out)
                })?;
                fdpass::send(app, &out, &pending).map_err(|e| format!("app: {e}"))?;
                pending.clear();
            }
            other => return Err(format!("the host sent {other:?}")),
        }
    }
}

/// Handles one event: object bookkeeping and the globals filter. Appends what to forward.
pub(crate) fn event(
    st: &mut State,
    sender: u32,
    opcode: u16,
    msg: &mut [u8],
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let iface = st
        .objects
        .get(sender)
        .ok_or_else(|| format!("event from unknown object {sender}"))?;
    let desc = wire::message(iface, opcode, false)?;
    let args = wire::parse_args(desc.signature, &msg[HEADER..])?;
    for a in &args {
        if let Arg::NewId(id) = a {
            let child = desc
                .child_interface
                .ok_or("the host created an object of no known interface")?;
            st.objects.insert(*id, child)?;
        }
    }
    match (iface.name, desc.name) {
        ("wl_registry", "global") if !filter_global(&args, msg)? => {
            return Ok(()); // not shown to apps
        }
        ("wl_display", "delete_id") => st.objects.remove(object_arg(&args)?),
        _ => {}
    }
    out.extend_from_slice(msg);
    Ok(())
}

/// wl_registry.global: whether apps see it, its version capped at what the proxy handles.
pub(crate) fn filter_global(args: &[Arg], msg: &mut [u8]) -> Result<bool, String> {
    let Some(Arg::Str(Some(name))) = args.get(1) else {
        return Err("global without a name".into());
    };
    let Some(ours) = allowed(name) else {
        return Ok(false);
    };
    let version = int(args, 2)?.min(ours.version as i64) as u32;
    let n = msg.len();
    msg[n - 4..].copy_from_slice(&version.to_ne_bytes());
    Ok(true)
}

fn object_arg(args: &[Arg]) -> Result<u32, String> {
    match args.first() {
        Some(Arg::Uint(v)) => Ok(*v),
        _ => Err("argument type mismatch".into()),
    }
}

/// A read-only memfd holding `data` (keymaps).
pub(crate) fn sealed_memfd(data: &[u8]) -> io::Result<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let fd = memfd_create(
        c"bulkhead-blob",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )?;
    let mut f = File::from(fd);
    f.write_all(data)?;
    let seals = SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE
        | SealFlag::F_SEAL_SEAL;
    fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&f),
        FcntlArg::F_ADD_SEALS(seals),
    )?;
    Ok(OwnedFd::from(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::test_messages::{bind_body, words};
    use wayland_protocols::wp::primary_selection::zv1::client::__interfaces::ZWP_PRIMARY_SELECTION_OFFER_V1_INTERFACE;

    fn state() -> State {
        State::new()
    }

    fn records(out: &[Out]) -> Vec<Record> {
        out.iter().map(Out::to_record).collect()
    }

    /// A pool of 4096 bytes as object 5 (the app's file).
    fn with_pool(st: &mut State) {
        st.objects.insert(4, &WL_SHM_INTERFACE).unwrap();
        let f = tempfile::tempfile().unwrap();
        f.set_len(4096).unwrap();
        let mut fds = VecDeque::from([OwnedFd::from(f)]);
        let mut pre = Vec::new();
        // wl_shm.create_pool(new_id 5, fd, size 4096)
        request(st, 4, 0, &words(&[5, 4096]), &mut fds, &mut pre).unwrap();
        assert_eq!(records(&pre), [Record::ShmNew { id: 1, size: 4096 }]);
    }

    #[test]
    fn hostile_requests_drop_the_app_without_a_panic() {
        let neg = |v: u32| 0u32.wrapping_sub(v);
        let mut bind = words(&[1, 19]);
        bind.extend(b"zwlr_screencopy_v1\0\0\0");
        bind.extend(words(&[1, 7]));
        let bad: Vec<(u32, u16, Vec<u8>)> = vec![
            // create_buffer with negative or zero sizes, a negative offset or stride.
            (5, 0, words(&[6, 0, neg(5), 10, 40, 0])),
            (5, 0, words(&[6, 0, 10, 0, 40, 0])),
            (5, 0, words(&[6, neg(1), 10, 10, 40, 0])),
            (5, 0, words(&[6, 0, 10, 10, neg(40), 0])),
            // resize beyond the file, to zero, or negative.
            (5, 2, words(&[1 << 20])),
            (5, 2, words(&[0])),
            (5, 2, words(&[neg(1)])),
            // Requests to objects that do not exist, and unknown opcodes.
            (99, 0, vec![]),
            (5, 42, vec![]),
            // A bind of a global the proxy does not offer.
            (2, 0, bind),
        ];
        for (sender, opcode, body) in bad {
            let mut st = state();
            with_pool(&mut st);
            st.objects.insert(2, &WL_REGISTRY_INTERFACE).unwrap();
            let mut pre = Vec::new();
            let r = request(
                &mut st,
                sender,
                opcode,
                &body,
                &mut VecDeque::new(),
                &mut pre,
            );
            assert!(r.is_err(), "accepted {sender}/{opcode} {body:?}");
        }
        // create_pool without its fd.
        let mut st = state();
        st.objects.insert(4, &WL_SHM_INTERFACE).unwrap();
        let r = request(
            &mut st,
            4,
            0,
            &words(&[5, 4096]),
            &mut VecDeque::new(),
            &mut Vec::new(),
        );
        assert!(r.unwrap_err().contains("without its file descriptor"));
    }

    /// Every global the proxy offers is refused above the version it understands, and binds
    /// at that version; a primary selection offer's receive needs its pipe, which becomes a
    /// pipe record for the host like the clipboard's.
    #[test]
    fn each_offered_global_binds_up_to_its_version_only() {
        for iface in ALLOWED {
            let mut st = state();
            st.objects.insert(2, &WL_REGISTRY_INTERFACE).unwrap();
            let mut pre = Vec::new();
            let over = bind_body(iface.name, iface.version + 1, 3);
            let r = request(&mut st, 2, 0, &over, &mut VecDeque::new(), &mut pre);
            assert!(
                r.is_err(),
                "{} bound above version {}",
                iface.name,
                iface.version
            );
            let ok = bind_body(iface.name, iface.version, 3);
            request(&mut st, 2, 0, &ok, &mut VecDeque::new(), &mut pre).unwrap();
            assert_eq!(st.objects.get(3).map(|i| i.name), Some(iface.name));
        }
        let mut st = state();
        st.objects
            .insert(5, &ZWP_PRIMARY_SELECTION_OFFER_V1_INTERFACE)
            .unwrap();
        let mut mime = words(&[11]);
        mime.extend(b"text/plain\0\0");
        let mut pre = Vec::new();
        let r = request(&mut st, 5, 0, &mime, &mut VecDeque::new(), &mut pre);
        assert!(r.unwrap_err().contains("without its file descriptor"));
        let (_r, w) = nix::unistd::pipe().unwrap();
        let mut fds = VecDeque::from([w]);
        request(&mut st, 5, 0, &mime, &mut fds, &mut pre).unwrap();
        assert!(matches!(records(&pre)[..], [Record::PipeWrite { .. }]));
    }

    /// A stand-in bridge on a Unix socket: answers hello with `version`, then sends
    /// `records` and returns every record the proxy sent until it closed.
    fn fake_host(
        dir: &tempfile::TempDir,
        version: u32,
        records: Vec<Record>,
    ) -> (HostEndpoint, std::thread::JoinHandle<Vec<Record>>) {
        let path = dir.path().join("bridge");
        let listener = UnixListener::bind(&path).unwrap();
        let host = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            Record::Hello { version }.write(&mut s).unwrap();
            for r in records {
                r.write(&mut s).unwrap();
            }
            while let Ok(Some(r)) = Record::read(&mut s) {
                got.push(r);
            }
            got
        });
        (HostEndpoint::Unix(path), host)
    }

    #[test]
    fn a_bridge_of_another_stream_version_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let (ep, host) = fake_host(&dir, STREAM_VERSION - 1, vec![]);
        let (app, _ours) = UnixStream::pair().unwrap();
        let err = relay(app, &ep).unwrap_err();
        assert!(
            err.contains(&format!("speaks stream version {}", STREAM_VERSION - 1)),
            "{err}"
        );
        drop(host);
    }

    #[test]
    fn wayland_bytes_declare_the_descriptors_they_carry() {
        let dir = tempfile::tempdir().unwrap();
        let (ep, host) = fake_host(&dir, STREAM_VERSION, vec![]);
        let (app, ours) = UnixStream::pair().unwrap();
        let relay = std::thread::spawn(move || relay(app, &ep));
        // wl_display.get_registry(2); wl_registry.bind(1, "wl_shm", 1, 3).
        let mut msgs = words(&[1, (12 << 16) | 1, 2, 2, (32 << 16), 1, 7]);
        msgs.extend(b"wl_shm\0\0");
        msgs.extend(words(&[1, 3]));
        fdpass::send(&ours, &msgs, &[]).unwrap();
        // wl_shm.create_pool(4, fd, 4096), its fd with it.
        let pool = tempfile::tempfile().unwrap();
        pool.set_len(4096).unwrap();
        let create = words(&[3, 16 << 16, 4, 4096]);
        fdpass::send(&ours, &create, &[OwnedFd::from(pool)]).unwrap();
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = relay.join().unwrap();
        let got = host.join().unwrap();
        let at = got
            .iter()
            .position(|r| matches!(r, Record::Wl { data, .. } if data.ends_with(&create)))
            .expect("create_pool reached the host");
        assert_eq!(got[at - 1], Record::ShmNew { id: 1, size: 4096 });
        let counts: Vec<u8> = got
            .iter()
            .filter_map(|r| match r {
                Record::Wl { fds, .. } => Some(*fds),
                _ => None,
            })
            .collect();
        assert_eq!(counts.last(), Some(&1), "{got:?}");
        assert_eq!(counts.iter().map(|c| *c as usize).sum::<usize>(), 1);
    }

    #[test]
    fn host_bytes_declaring_other_descriptors_end_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let keymap = Record::Blob(b"xkb_keymap {}".to_vec());
        let wl = |fds| Record::Wl {
            fds,
            data: words(&[1, 12 << 16, 1]),
        };
        for (records, want) in [
            (
                vec![keymap.clone(), wl(0)],
                "declare 0 file descriptors, but 1",
            ),
            (vec![wl(1)], "declare 1 file descriptors, but 0"),
        ] {
            let (ep, host) = fake_host(&dir, STREAM_VERSION, records);
            let (app, _ours) = UnixStream::pair().unwrap();
            let err = relay(app, &ep).unwrap_err();
            assert!(err.contains(want), "{err}");
            drop(host);
            let _ = std::fs::remove_file(dir.path().join("bridge"));
        }
    }

    /// Rectangles go from the app's file as they are sent. An app that shrank its pool, or
    /// passed a file that cannot be read at an offset, gets zeros for what is missing, and the
    /// stream stays whole for the records after.
    #[test]
    fn a_pool_that_shrank_under_the_proxy_sends_zeros() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let w: Writer = Arc::new(Mutex::new(Sink {
            host: Host::Unix(ours),
            bytes: 0,
            commits: 0,
        }));
        let pool = tempfile::tempfile().unwrap();
        pool.write_all_at(&[0xab; 8192], 0).unwrap();
        let pool = Arc::new(pool);
        let (pipe_r, _pipe_w) = nix::unistd::pipe().unwrap();
        let chunk = |file: &Arc<File>, offset, len| {
            Out::FromPool(PoolChunk {
                id: 1,
                offset,
                len,
                file: file.clone(),
            })
        };
        let first = chunk(&pool, 4096, 4096);
        assert_eq!(
            first.to_record(),
            Record::ShmWrite {
                id: 1,
                offset: 4096,
                data: vec![0xab; 4096]
            }
        );
        let out = [
            first,
            chunk(&Arc::new(File::from(pipe_r)), 0, 100),
            Out::Record(Record::Wl {
                fds: 0,
                data: vec![1, 2, 3, 4],
            }),
        ];
        pool.set_len(6000).unwrap();
        let reader = std::thread::spawn(move || {
            let mut theirs = theirs;
            (0..3)
                .map(|_| Record::read(&mut theirs).unwrap().unwrap())
                .collect::<Vec<_>>()
        });
        send_out(&w, &out).unwrap();
        let got = reader.join().unwrap();
        let mut shrunk = vec![0xab; 6000 - 4096];
        shrunk.resize(4096, 0);
        assert_eq!(
            got,
            [
                Record::ShmWrite {
                    id: 1,
                    offset: 4096,
                    data: shrunk
                },
                Record::ShmWrite {
                    id: 1,
                    offset: 0,
                    data: vec![0; 100]
                },
                Record::Wl {
                    fds: 0,
                    data: vec![1, 2, 3, 4]
                },
            ]
        );
    }

    #[test]
    fn a_commit_sends_what_the_host_copy_lacks() {
        let mut st = state();
        with_pool(&mut st);
        st.objects.insert(7, &WL_SURFACE_INTERFACE).unwrap();
        let mut pre = Vec::new();
        let mut no_fds = VecDeque::new();
        // create_buffer(new_id 6, offset 0, 16x16, stride 64, xrgb8888)
        request(
            &mut st,
            5,
            0,
            &words(&[6, 0, 16, 16, 64, 1]),
            &mut no_fds,
            &mut pre,
        )
        .unwrap();
        // attach(6, 0, 0); damage_buffer(0, 0, 4, 2); commit
        request(&mut st, 7, 1, &words(&[6, 0, 0]), &mut no_fds, &mut pre).unwrap();
        request(&mut st, 7, 9, &words(&[0, 0, 4, 2]), &mut no_fds, &mut pre).unwrap();
        request(&mut st, 7, 6, &[], &mut no_fds, &mut pre).unwrap();
        // First use: the whole buffer, 16 rows of 64 bytes.
        let total: usize = records(&pre)
            .iter()
            .map(|r| match r {
                Record::ShmWrite { data, .. } => data.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(total, 16 * 64);
        // Next commit with a small damage: only those columns of those rows.
        pre.clear();
        request(&mut st, 7, 9, &words(&[2, 3, 4, 2]), &mut no_fds, &mut pre).unwrap();
        request(&mut st, 7, 6, &[], &mut no_fds, &mut pre).unwrap();
        assert_eq!(
            records(&pre),
            vec![
                Record::ShmWrite {
                    id: 1,
                    offset: 3 * 64 + 8,
                    data: vec![0; 16]
                },
                Record::ShmWrite {
                    id: 1,
                    offset: 4 * 64 + 8,
                    data: vec![0; 16]
                },
            ]
        );
    }
}
