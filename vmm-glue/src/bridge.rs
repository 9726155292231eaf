//! `bulkhead-wl-bridge`, the host side of the vsock graphics transport, one per VM.
//!
//! It accepts the guest proxy's streams (through vhost-device-vsock: guest connections to host
//! port 5000 arrive on `<runtime>/vsock.sock_5000`) and connects each to the VM's Wayland
//! socket, exactly as crosvm's cross-domain does, so the compositor sees the same clients from
//! both transports. It does not parse Wayland: it turns the stream's records back into file
//! descriptors (shared memory it owns and fills with the rectangles the guest sends, pipes) and
//! the compositor's descriptors into records (keymaps as their contents, pipe write ends). Every
//! record is checked against fixed limits; a bad stream ends that app's connection only.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bulkhead_ipc::wlstream::{
    fdpass, pump_pipe, Pipes, Record, MAX_BLOB, MAX_CHUNK, MAX_IDS, STREAM_VERSION,
};

/// What one VM's bridge allows. The bridge binary uses [`Limits::default`]; tests pass small
/// ones. (Only `streams` and `shm_memory_per_stream` are enforced yet, as before: the per-app
/// total of shared memory, refunded when the guest drops a pool. The next commits enforce the
/// rest.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// App streams served at once; more are refused.
    pub streams: usize,
    /// Shared memory of one stream.
    pub shm_memory_per_stream: u64,
    /// Shared memory of all the VM's streams.
    pub shm_memory_per_vm: u64,
    /// Shared-memory pools one stream holds open.
    pub pools_per_stream: usize,
    /// Pools of all the VM's streams.
    pub pools_per_vm: usize,
    /// Pipes (clipboard and drag-and-drop transfers) open on one stream.
    pub pipes_per_stream: usize,
    /// Pipes of all the VM's streams.
    pub pipes_per_vm: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            streams: 64,
            shm_memory_per_stream: 2 * 1024 * 1024 * 1024,
            shm_memory_per_vm: u64::MAX,
            pools_per_stream: MAX_IDS,
            pools_per_vm: usize::MAX,
            pipes_per_stream: usize::MAX,
            pipes_per_vm: usize::MAX,
        }
    }
}

/// One VM's bridge: the Wayland socket its streams go to, and its limits.
pub struct Bridge {
    wayland: PathBuf,
    limits: Limits,
}

impl Bridge {
    pub fn new(wayland: PathBuf, limits: Limits) -> Bridge {
        Bridge { wayland, limits }
    }

    /// Bridges one guest stream to a new connection on the VM's Wayland socket.
    pub fn stream(&self, guest: UnixStream) -> Result<(), String> {
        bridge(guest, &self.wayland, self.limits.shm_memory_per_stream)
    }
}

/// Accepts guest streams on `listen` and bridges each to the Wayland socket `wayland`, under
/// the seccomp filter of `crate::sandbox` once listening.
pub fn serve(listen: &Path, wayland: &Path, seccomp: crate::sandbox::Mode) -> io::Result<()> {
    let _ = std::fs::remove_file(listen);
    let listener = UnixListener::bind(listen)?;
    crate::sandbox::confine_bridge(seccomp).map_err(io::Error::other)?;
    let vm = Arc::new(Bridge::new(wayland.to_path_buf(), Limits::default()));
    let max_streams = vm.limits.streams;
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for guest in listener.incoming() {
        let guest = match guest {
            Ok(g) => g,
            Err(e) => {
                eprintln!("bulkhead-wl-bridge: accept: {e}");
                continue;
            }
        };
        use std::sync::atomic::Ordering;
        if live.load(Ordering::SeqCst) >= max_streams {
            eprintln!("bulkhead-wl-bridge: more than {max_streams} apps; refusing one");
            continue;
        }
        live.fetch_add(1, Ordering::SeqCst);
        let vm = vm.clone();
        let live = live.clone();
        std::thread::spawn(move || {
            if let Err(e) = vm.stream(guest) {
                eprintln!("bulkhead-wl-bridge: app stream ended: {e}");
            }
            live.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

struct Shm {
    file: File,
    size: u64,
}

#[derive(Default)]
struct State {
    shm: HashMap<u32, Shm>,
    shm_total: u64,
    /// Compositor fds that data from the guest goes into (wl_data_source.send).
    pipes: Pipes,
}

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

type Writer = Arc<Mutex<UnixStream>>;

fn send(w: &Writer, records: &[Record]) -> io::Result<()> {
    let mut bytes = Vec::new();
    for r in records {
        bytes.extend(r.encode()?);
    }
    w.lock()
        .unwrap_or_else(|e| e.into_inner())
        .write_all(&bytes)
}

fn bridge(mut guest: UnixStream, wayland: &Path, max_shm: u64) -> Result<(), String> {
    let theirs = Record::read(&mut guest).map_err(|e| e.to_string())?;
    // Ours goes out even when theirs differs, so the guest can say what is wrong too.
    Record::Hello {
        version: STREAM_VERSION,
    }
    .write(&mut guest)
    .map_err(|e| e.to_string())?;
    match theirs {
        Some(Record::Hello { version }) if version == STREAM_VERSION => {}
        Some(Record::Hello { version }) => {
            return Err(format!(
                "the guest speaks stream version {version}, this bridge {STREAM_VERSION}: the \
                 guest's bulkhead-wl-proxy and the host's bulkhead-wl-bridge must be of one \
                 release"
            ))
        }
        other => {
            return Err(format!(
                "expected hello version {STREAM_VERSION}, got {other:?}"
            ))
        }
    }
    let comp = UnixStream::connect(wayland)
        .map_err(|e| format!("cannot connect to {}: {e}", wayland.display()))?;
    let state = Arc::new(Mutex::new(State::default()));
    let writer: Writer = Arc::new(Mutex::new(guest.try_clone().map_err(|e| e.to_string())?));
    let (comp2, s2, w2) = (
        comp.try_clone().map_err(|e| e.to_string())?,
        state.clone(),
        writer.clone(),
    );
    let guest2 = guest.try_clone().map_err(|e| e.to_string())?;
    let down = std::thread::spawn(move || {
        let r = compositor_to_guest(&comp2, &s2, &w2);
        let _ = guest2.shutdown(std::net::Shutdown::Both);
        r
    });
    let up = guest_to_compositor(
        guest.try_clone().map_err(|e| e.to_string())?,
        &comp,
        &state,
        &writer,
        max_shm,
    );
    let _ = comp.shutdown(std::net::Shutdown::Both);
    let _ = guest.shutdown(std::net::Shutdown::Both);
    let down = down
        .join()
        .unwrap_or_else(|_| Err("bridge thread panicked".into()));
    up.and(down)
}

fn guest_to_compositor(
    mut guest: UnixStream,
    comp: &UnixStream,
    state: &Mutex<State>,
    w: &Writer,
    max_shm: u64,
) -> Result<(), String> {
    let mut pending: Vec<OwnedFd> = Vec::new();
    loop {
        let Some(rec) = Record::read(&mut guest).map_err(|e| format!("guest: {e}"))? else {
            return Ok(());
        };
        if rec.stands_for_fd() && pending.len() >= fdpass::MAX_FDS {
            return Err(format!(
                "more than {} file descriptors wait for the Wayland bytes that carry them",
                fdpass::MAX_FDS
            ));
        }
        match rec {
            Record::ShmNew { id, size } => {
                let mut st = lock(state);
                if st.shm.len() >= MAX_IDS || st.shm.contains_key(&id) {
                    return Err(format!("shared memory {id} is a duplicate or one too many"));
                }
                if st.shm_total + size > max_shm {
                    return Err("the app holds too much shared memory".into());
                }
                let file = memfd(size).map_err(|e| e.to_string())?;
                pending.push(OwnedFd::from(file.try_clone().map_err(|e| e.to_string())?));
                st.shm_total += size;
                st.shm.insert(id, Shm { file, size });
            }
            Record::ShmResize { id, size } => {
                let mut st = lock(state);
                let old = st
                    .shm
                    .get(&id)
                    .map(|s| s.size)
                    .ok_or("resize of unknown memory")?;
                if size < old || st.shm_total - old + size > max_shm {
                    return Err(format!("shared memory {id} cannot become {size} bytes"));
                }
                if let Some(s) = st.shm.get_mut(&id) {
                    s.file.set_len(size).map_err(|e| e.to_string())?;
                    s.size = size;
                }
                st.shm_total = st.shm_total - old + size;
            }
            Record::ShmWrite { id, offset, data } => {
                let st = lock(state);
                let s = st.shm.get(&id).ok_or("write to unknown memory")?;
                let end = offset
                    .checked_add(data.len() as u64)
                    .ok_or("write past the end")?;
                if end > s.size {
                    return Err(format!(
                        "write of {} bytes at {offset} past {} bytes",
                        data.len(),
                        s.size
                    ));
                }
                s.file
                    .write_all_at(&data, offset)
                    .map_err(|e| e.to_string())?;
            }
            Record::ShmDrop { id } => {
                let mut st = lock(state);
                if let Some(s) = st.shm.remove(&id) {
                    st.shm_total -= s.size;
                }
            }
            Record::PipeWrite { id } => {
                let (r, wr) = nix::unistd::pipe().map_err(|e| e.to_string())?;
                pending.push(wr);
                let w = w.clone();
                std::thread::spawn(move || pump_pipe(File::from(r), id, |recs| send(&w, recs)));
            }
            Record::PipeData { id, data } => lock(state).pipes.deliver(id, &data),
            Record::PipeClose { id } => lock(state).pipes.close(id),
            Record::Wl { fds, data } => {
                // Descriptors go only with the bytes that declare them.
                if usize::from(fds) != pending.len() {
                    return Err(format!(
                        "Wayland bytes declare {fds} file descriptors, but {} wait to be attached",
                        pending.len()
                    ));
                }
                fdpass::send(comp, &data, &pending).map_err(|e| format!("compositor: {e}"))?;
                pending.clear();
            }
            other => return Err(format!("the guest sent {other:?}")),
        }
    }
}

fn compositor_to_guest(comp: &UnixStream, state: &Mutex<State>, w: &Writer) -> Result<(), String> {
    let mut buf = vec![0u8; MAX_CHUNK];
    loop {
        let mut fds = Vec::new();
        let n = fdpass::recv(comp, &mut buf, &mut fds).map_err(|e| format!("compositor: {e}"))?;
        if n == 0 {
            // A stream socket carries descriptors with bytes only: this is its end.
            return Ok(());
        }
        let count = u8::try_from(fds.len()).map_err(|_| "too many file descriptors at once")?;
        let mut out = Vec::new();
        for fd in fds {
            out.push(describe(File::from(fd), state)?);
        }
        out.push(Record::Wl {
            fds: count,
            data: buf[..n].to_vec(),
        });
        send(w, &out).map_err(|e| format!("guest: {e}"))?;
    }
}

/// Turns a descriptor the compositor sends into a record: a pipe write end (the guest app
/// writes, we forward) or a file's contents (keymaps).
fn describe(f: File, state: &Mutex<State>) -> Result<Record, String> {
    let meta = f.metadata().map_err(|e| e.to_string())?;
    if meta.file_type().is_fifo() {
        let flags = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| e.to_string())?;
        if flags & libc::O_ACCMODE != libc::O_WRONLY {
            return Err("the compositor sent a pipe read end, which no protocol here uses".into());
        }
        let id = lock(state).pipes.add(f).map_err(|e| e.to_string())?;
        Ok(Record::PipeWrite { id })
    } else if meta.is_file() {
        let len = meta.len() as usize;
        if len > MAX_BLOB {
            return Err(format!(
                "a shared file of {len} bytes is larger than {MAX_BLOB}"
            ));
        }
        let mut data = vec![0u8; len];
        f.read_exact_at(&mut data, 0).map_err(|e| e.to_string())?;
        Ok(Record::Blob(data))
    } else {
        Err("the compositor sent a file descriptor of an unknown kind".into())
    }
}

fn memfd(size: u64) -> io::Result<File> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
    let fd = memfd_create(c"bulkhead-shm", MemFdCreateFlag::MFD_CLOEXEC)?;
    let f = File::from(fd);
    f.set_len(size)?;
    Ok(f)
}
