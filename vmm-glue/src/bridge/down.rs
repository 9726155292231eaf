//! Compositor → guest: the compositor's messages and descriptors become records, and what
//! arrives in the pipes the guest reads from becomes `PipeData`, all from one thread that waits
//! on the compositor's socket, a wake-up pipe and every open pipe at once (ppoll). No thread
//! per pipe: the number of pipes is capped (`limits`), the number of threads fixed.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::os::unix::net::UnixStream;

use bulkhead_ipc::wlstream::{fdpass, Record, MAX_BLOB, MAX_CHUNK};
use nix::poll::{ppoll, PollFd, PollFlags};

use super::limits::Resource;
use super::{io_err, lock, Shared, StreamError};

/// Moves the compositor's messages and the pipes' data to the guest until the compositor's
/// connection ends.
pub(super) fn run(
    comp: &UnixStream,
    guest: &UnixStream,
    shared: &Shared,
    wake: File,
) -> Result<(), StreamError> {
    let mut down = Down {
        comp,
        guest,
        shared,
        wake,
        pumps: Vec::new(),
        buf: vec![0; MAX_CHUNK],
    };
    loop {
        let ready = down.wait()?;
        if ready.compositor && !down.compositor_message()? {
            return Ok(());
        }
        if ready.wake {
            down.take_new_pumps();
        }
        // Highest first: removing a finished pipe leaves the lower indices as they were.
        for i in ready.pumps.into_iter().rev() {
            down.pump(i)?;
        }
    }
}

struct Down<'a> {
    comp: &'a UnixStream,
    guest: &'a UnixStream,
    shared: &'a Shared,
    wake: File,
    /// Pipes whose data goes to the guest, by the guest's id.
    pumps: Vec<(u32, File)>,
    buf: Vec<u8>,
}

/// What `ppoll` found readable (or closed).
struct Ready {
    compositor: bool,
    wake: bool,
    /// Indices into `Down::pumps`, ascending.
    pumps: Vec<usize>,
}

impl Down<'_> {
    fn wait(&self) -> Result<Ready, StreamError> {
        let mut fds = Vec::with_capacity(2 + self.pumps.len());
        fds.push(PollFd::new(self.comp.as_fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(self.wake.as_fd(), PollFlags::POLLIN));
        for (_, p) in &self.pumps {
            fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
        }
        loop {
            match ppoll(&mut fds, None, None) {
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(io_err("ppoll")(e.into())),
            }
        }
        let hit = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        Ok(Ready {
            compositor: fds.first().is_some_and(hit),
            wake: fds.get(1).is_some_and(hit),
            pumps: fds
                .iter()
                .skip(2)
                .enumerate()
                .filter(|(_, f)| hit(f))
                .map(|(i, _)| i)
                .collect(),
        })
    }

    /// One read from the compositor: its descriptors as records, then its bytes declaring
    /// them. `false` when the compositor closed the connection.
    fn compositor_message(&mut self) -> Result<bool, StreamError> {
        let mut fds = Vec::new();
        let n = fdpass::recv(self.comp, &mut self.buf, &mut fds).map_err(io_err("compositor"))?;
        if n == 0 {
            // A stream socket carries descriptors with bytes only: this is its end.
            return Ok(false);
        }
        let count = u8::try_from(fds.len())
            .map_err(|_| StreamError::Compositor("too many file descriptors at once".into()))?;
        let mut out = Vec::with_capacity(fds.len() + 1);
        for fd in fds {
            out.push(self.describe(File::from(fd))?);
        }
        out.push(Record::Wl {
            fds: count,
            data: self.buf.get(..n).unwrap_or_default().to_vec(),
        });
        self.send(&out).map(|()| true)
    }

    /// Turns a descriptor the compositor sends into a record: a pipe write end (the guest app
    /// writes, the bridge forwards) or a file's contents (keymaps).
    fn describe(&self, f: File) -> Result<Record, StreamError> {
        let meta = f
            .metadata()
            .map_err(io_err("a descriptor from the compositor"))?;
        if meta.file_type().is_fifo() {
            let flags = nix::fcntl::fcntl(f.as_raw_fd(), nix::fcntl::FcntlArg::F_GETFL)
                .map_err(|e| io_err("a pipe from the compositor")(e.into()))?;
            if flags & libc::O_ACCMODE != libc::O_WRONLY {
                return Err(StreamError::Compositor(
                    "the compositor sent a pipe read end, which no protocol here uses".into(),
                ));
            }
            lock(&self.shared.usage).take(Resource::Pipes, 1)?;
            let id = lock(&self.shared.pipes)
                .add(f)
                .map_err(io_err("a pipe from the compositor"))?;
            Ok(Record::PipeWrite { id })
        } else if meta.is_file() {
            let len = usize::try_from(meta.len()).unwrap_or(usize::MAX);
            if len > MAX_BLOB {
                return Err(StreamError::Compositor(format!(
                    "a shared file of {len} bytes is larger than {MAX_BLOB}"
                )));
            }
            let mut data = vec![0u8; len];
            f.read_exact_at(&mut data, 0)
                .map_err(io_err("a file from the compositor"))?;
            Ok(Record::Blob(data))
        } else {
            Err(StreamError::Compositor(
                "the compositor sent a file descriptor of an unknown kind".into(),
            ))
        }
    }

    /// Empties the wake-up pipe, then takes the pipes `up` made since (in that order, so a
    /// pipe added after the emptying wakes the next wait).
    fn take_new_pumps(&mut self) {
        let mut sink = [0u8; 64];
        while matches!((&self.wake).read(&mut sink), Ok(n) if n > 0) {}
        self.pumps.append(&mut lock(&self.shared.pumps));
    }

    /// One read from pipe `i`: its data to the guest, or at its end `PipeClose` and the pipe
    /// given back.
    fn pump(&mut self, i: usize) -> Result<(), StreamError> {
        let Some((id, pipe)) = self.pumps.get_mut(i) else {
            return Ok(());
        };
        let id = *id;
        let n = match pipe.read(&mut self.buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) =>
            {
                return Ok(())
            }
            Err(_) => 0,
        };
        if n > 0 {
            let data = self.buf.get(..n).unwrap_or_default().to_vec();
            return self.send(&[Record::PipeData { id, data }]);
        }
        self.pumps.remove(i);
        lock(&self.shared.usage).give(Resource::Pipes, 1);
        self.send(&[Record::PipeClose { id }])
    }

    fn send(&self, records: &[Record]) -> Result<(), StreamError> {
        let mut bytes = Vec::new();
        for r in records {
            r.encode_into(&mut bytes)
                .map_err(io_err("encoding a record"))?;
        }
        let mut guest = self.guest;
        guest.write_all(&bytes).map_err(io_err("guest"))
    }
}
