//! The Wayland-over-vsock stream between `bulkhead-wl-proxy` (guest) and `bulkhead-wl-bridge`
//! (host), for VMMs without a cross-domain GPU.
//!
//! One stream per guest app. It starts with [`Record::Hello`] from both sides. Wayland bytes
//! travel as they are ([`Record::Wl`]); file descriptors cannot, so each is replaced by a record
//! sent before the bytes of the message that carries it, in order, and those bytes' record
//! declares how many it carries: every descriptor made for the records since the previous
//! Wayland bytes, no more and no fewer (a receiver refuses a count that differs). The records
//! that stand for a descriptor:
//!
//! - guest → host [`Record::ShmNew`]: the app created a wl_shm pool; the bridge creates a host
//!   memfd of that size and passes it on. The pool's contents follow as [`Record::ShmWrite`]
//!   rectangles (rows of the damaged area) before each commit that needs them.
//! - either way [`Record::PipeWrite`]: an fd the receiving side's peer *writes into* (the write
//!   end of a pipe: wl_data_offer.receive from the guest, wl_data_source.send from the host).
//!   The receiver makes a pipe, hands the write end on, and streams what arrives back as
//!   [`Record::PipeData`] / [`Record::PipeClose`] under the same id.
//! - host → guest [`Record::Blob`]: a read-only file the compositor shares (the keymap): its
//!   contents, which the proxy puts in a sealed memfd.
//!
//! Framing: `[u32 little-endian length][u8 tag][payload]`, the length counting tag and payload,
//! at most [`MAX_FRAME`] ([`MAX_SHM_FRAME`] for an shm write, whose data a receiver reads straight
//! into the pool). Integers are little-endian. Anything malformed ends the stream.

use std::io::{self, Read, Write};

/// Version both sides speak. Each side sends its hello and refuses another version, saying
/// both. Version 2: Wayland bytes declare the descriptors they carry (before, whatever was
/// pending rode on the next bytes). Version 3: shm writes carry up to [`MAX_SHM_CHUNK`].
pub const STREAM_VERSION: u32 = 3;

/// The host vsock port the guest proxy connects to, one connection per app.
pub const WAYLAND_PORT: u32 = 5000;

/// Largest frame (tag + payload).
pub const MAX_FRAME: usize = 128 * 1024;

/// Largest data chunk in one record (leaves room for the record's own fields).
pub const MAX_CHUNK: usize = MAX_FRAME - 64;

/// Largest data of one shm write. Receivers read it straight into the pool, never into a
/// buffer of its size, so it may be larger than other records: a 1080p frame is 8 of them,
/// which costs fewer wake-ups on both sides than 64.
pub const MAX_SHM_CHUNK: usize = 1024 * 1024;

/// Largest frame of an shm write (tag, fields and [`MAX_SHM_CHUNK`] of data).
pub const MAX_SHM_FRAME: usize = 1 + 12 + MAX_SHM_CHUNK;

/// Largest frame of records of `tag`.
fn max_frame(tag: u8) -> usize {
    if tag == SHM_WRITE {
        MAX_SHM_FRAME
    } else {
        MAX_FRAME
    }
}

/// Largest shared-memory pool the bridge accepts. Pools are sparse memfds: foot, for one, maps
/// a 512 MiB pool and scrolls its buffers through it, touching only what it draws.
pub const MAX_SHM: u64 = 1024 * 1024 * 1024;

/// Largest blob (keymaps are tens of kB).
pub const MAX_BLOB: usize = 4 * 1024 * 1024;

/// Most pools and pipes alive on one stream.
pub const MAX_IDS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Hello {
        version: u32,
    },
    /// Wayland bytes, carrying the `fds` descriptors made for the records since the last ones
    /// (at most [`fdpass::MAX_FDS`]; none without bytes).
    Wl {
        fds: u8,
        data: Vec<u8>,
    },
    ShmNew {
        id: u32,
        size: u64,
    },
    ShmResize {
        id: u32,
        size: u64,
    },
    ShmWrite {
        id: u32,
        offset: u64,
        data: Vec<u8>,
    },
    ShmDrop {
        id: u32,
    },
    PipeWrite {
        id: u32,
    },
    PipeData {
        id: u32,
        data: Vec<u8>,
    },
    PipeClose {
        id: u32,
    },
    Blob(Vec<u8>),
}

const HELLO: u8 = 1;
const WL: u8 = 2;
const SHM_NEW: u8 = 3;
const SHM_RESIZE: u8 = 4;
const SHM_WRITE: u8 = 5;
const SHM_DROP: u8 = 6;
const PIPE_WRITE: u8 = 7;
const PIPE_DATA: u8 = 8;
const PIPE_CLOSE: u8 = 9;
const BLOB: u8 = 10;

/// Whether records of `tag` carry data after their fixed fields.
fn carries_data(tag: u8) -> bool {
    matches!(tag, WL | SHM_WRITE | PIPE_DATA | BLOB)
}

/// Bytes of the fixed fields of records of `tag` (before any data).
fn fields_len(tag: u8) -> usize {
    match tag {
        HELLO | SHM_DROP | PIPE_WRITE | PIPE_DATA | PIPE_CLOSE => 4,
        WL => 1,
        SHM_NEW | SHM_RESIZE | SHM_WRITE => 12,
        _ => 0,
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

impl Record {
    /// Encodes the record; data longer than a frame allows is an error (callers chunk).
    pub fn encode(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the record's frame to `out`, copying its data once; on error `out` is as it
    /// was.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> io::Result<()> {
        out.reserve(4 + 1 + 12 + self.parts().2.len());
        let data = self.encode_head_into(out)?;
        out.extend(data);
        Ok(())
    }

    /// Appends the head of the record's frame (length, tag, fixed fields) to `out` and returns
    /// its data, which completes the frame: for a vectored write that does not copy the data.
    /// On error `out` is as it was.
    pub fn encode_head_into(&self, out: &mut Vec<u8>) -> io::Result<&[u8]> {
        let (tag, fields, data): (u8, [u8; 12], &[u8]) = self.parts();
        let nfields = fields_len(tag);
        let len = 1 + nfields + data.len();
        if len > max_frame(tag) {
            return Err(bad(format!(
                "record of {len} bytes exceeds {}",
                max_frame(tag)
            )));
        }
        out.extend((len as u32).to_le_bytes());
        out.push(tag);
        out.extend(&fields[..nfields]);
        Ok(data)
    }

    /// The record's tag, its fixed fields (little-endian, the first [`fields_len`] bytes) and
    /// its data.
    fn parts(&self) -> (u8, [u8; 12], &[u8]) {
        let mut f = [0u8; 12];
        let id_size = |f: &mut [u8; 12], id: u32, n: u64| {
            f[..4].copy_from_slice(&id.to_le_bytes());
            f[4..].copy_from_slice(&n.to_le_bytes());
        };
        match self {
            Record::Hello { version } => {
                f[..4].copy_from_slice(&version.to_le_bytes());
                (HELLO, f, &[])
            }
            Record::Wl { fds, data } => {
                f[0] = *fds;
                (WL, f, data)
            }
            Record::ShmNew { id, size } => {
                id_size(&mut f, *id, *size);
                (SHM_NEW, f, &[])
            }
            Record::ShmResize { id, size } => {
                id_size(&mut f, *id, *size);
                (SHM_RESIZE, f, &[])
            }
            Record::ShmWrite { id, offset, data } => {
                id_size(&mut f, *id, *offset);
                (SHM_WRITE, f, data)
            }
            Record::ShmDrop { id } => {
                f[..4].copy_from_slice(&id.to_le_bytes());
                (SHM_DROP, f, &[])
            }
            Record::PipeWrite { id } => {
                f[..4].copy_from_slice(&id.to_le_bytes());
                (PIPE_WRITE, f, &[])
            }
            Record::PipeData { id, data } => {
                f[..4].copy_from_slice(&id.to_le_bytes());
                (PIPE_DATA, f, data)
            }
            Record::PipeClose { id } => {
                f[..4].copy_from_slice(&id.to_le_bytes());
                (PIPE_CLOSE, f, &[])
            }
            Record::Blob(d) => (BLOB, f, d),
        }
    }

    /// Decodes one frame's tag and payload.
    pub fn decode(tag: u8, p: &[u8]) -> io::Result<Record> {
        if carries_data(tag) {
            let n = fields_len(tag);
            let (fields, data) = p
                .split_at_checked(n)
                .ok_or_else(|| bad("record too short"))?;
            return Record::from_parts(tag, fields, data.to_vec());
        }
        let u32_at = |o: usize| -> io::Result<u32> {
            p.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| bad("record too short"))
        };
        let u64_at = |o: usize| -> io::Result<u64> {
            p.get(o..o + 8)
                .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .ok_or_else(|| bad("record too short"))
        };
        let exact = |n: usize| -> io::Result<()> {
            if p.len() == n {
                Ok(())
            } else {
                Err(bad(format!(
                    "record of tag {tag} has {} bytes, not {n}",
                    p.len()
                )))
            }
        };
        Ok(match tag {
            HELLO => {
                exact(4)?;
                Record::Hello {
                    version: u32_at(0)?,
                }
            }
            SHM_NEW | SHM_RESIZE => {
                exact(12)?;
                let (id, size) = (u32_at(0)?, u64_at(4)?);
                if size > MAX_SHM {
                    return Err(bad(format!(
                        "shared memory of {size} bytes exceeds {MAX_SHM}"
                    )));
                }
                if tag == SHM_NEW {
                    Record::ShmNew { id, size }
                } else {
                    Record::ShmResize { id, size }
                }
            }
            SHM_DROP => {
                exact(4)?;
                Record::ShmDrop { id: u32_at(0)? }
            }
            PIPE_WRITE => {
                exact(4)?;
                Record::PipeWrite { id: u32_at(0)? }
            }
            PIPE_CLOSE => {
                exact(4)?;
                Record::PipeClose { id: u32_at(0)? }
            }
            other => return Err(bad(format!("unknown record tag {other}"))),
        })
    }

    /// A data-carrying record (Wayland bytes, shm writes, pipe data, blobs) from its fixed
    /// fields and its data, which it takes without copying.
    fn from_parts(tag: u8, fields: &[u8], data: Vec<u8>) -> io::Result<Record> {
        let u32_at = |o: usize| -> io::Result<u32> {
            fields
                .get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| bad("record too short"))
        };
        Ok(match tag {
            WL => {
                let &[fds] = fields else {
                    return Err(bad("Wayland bytes without their descriptor count"));
                };
                if usize::from(fds) > fdpass::MAX_FDS {
                    return Err(bad(format!(
                        "Wayland bytes with {fds} descriptors, more than {}",
                        fdpass::MAX_FDS
                    )));
                }
                if fds > 0 && data.is_empty() {
                    return Err(bad("descriptors without Wayland bytes to carry them"));
                }
                Record::Wl { fds, data }
            }
            SHM_WRITE => Record::ShmWrite {
                id: u32_at(0)?,
                offset: fields
                    .get(4..12)
                    .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .ok_or_else(|| bad("record too short"))?,
                data,
            },
            PIPE_DATA => Record::PipeData {
                id: u32_at(0)?,
                data,
            },
            BLOB => {
                if data.len() > MAX_BLOB {
                    return Err(bad("blob too large"));
                }
                Record::Blob(data)
            }
            other => return Err(bad(format!("record tag {other} carries no data"))),
        })
    }

    /// Reads one record; `Ok(None)` at a clean end of stream.
    pub fn read<R: Read>(r: &mut R) -> io::Result<Option<Record>> {
        match Incoming::read(r)? {
            None => Ok(None),
            Some(Incoming::Record(rec)) => Ok(Some(rec)),
            Some(Incoming::ShmWrite { id, offset, len }) => {
                // The data straight into the record's own buffer (no zeroing, no second copy).
                let mut data = Vec::with_capacity(len);
                Read::take(&mut *r, len as u64).read_to_end(&mut data)?;
                if data.len() != len {
                    return Err(bad("stream ended inside a record"));
                }
                Ok(Some(Record::ShmWrite { id, offset, data }))
            }
        }
    }

    pub fn write<W: Write>(&self, w: &mut W) -> io::Result<()> {
        w.write_all(&self.encode()?)
    }

    /// Whether the record stands for a descriptor, which the next [`Record::Wl`] must count.
    pub fn stands_for_fd(&self) -> bool {
        matches!(
            self,
            Record::ShmNew { .. } | Record::PipeWrite { .. } | Record::Blob(_)
        )
    }
}

/// What the next record on a stream is, read up to where a receiver may want the data
/// elsewhere: an shm write stops before its data, which a bridge reads straight into the
/// pool's memory instead of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// Any record, read whole.
    Record(Record),
    /// [`Record::ShmWrite`]'s fixed fields. Exactly `len` bytes of data (at most
    /// [`MAX_SHM_CHUNK`]) follow on the stream, and the reader must consume them before the next
    /// record.
    ShmWrite { id: u32, offset: u64, len: usize },
}

impl Incoming {
    /// Reads the next record (all of it but an shm write's data); `Ok(None)` at a clean end
    /// of stream.
    pub fn read<R: Read>(r: &mut R) -> io::Result<Option<Incoming>> {
        let mut header = [0u8; 5];
        let mut got = 0;
        while got < 5 {
            match r.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(bad("stream ended inside a record header")),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let tag = header[4];
        if len == 0 || len > max_frame(tag) {
            return Err(bad(format!(
                "record length {len} outside 1..={}",
                max_frame(tag)
            )));
        }
        if !carries_data(tag) {
            let mut payload = vec![0u8; len - 1];
            r.read_exact(&mut payload)?;
            return Record::decode(tag, &payload).map(|rec| Some(Incoming::Record(rec)));
        }
        let n = fields_len(tag);
        let rest = (len - 1)
            .checked_sub(n)
            .ok_or_else(|| bad("record too short"))?;
        let mut fields = [0u8; 12];
        r.read_exact(&mut fields[..n])?;
        if tag == SHM_WRITE {
            let [i0, i1, i2, i3, o @ ..] = fields;
            return Ok(Some(Incoming::ShmWrite {
                id: u32::from_le_bytes([i0, i1, i2, i3]),
                offset: u64::from_le_bytes(o),
                len: rest,
            }));
        }
        let mut data = Vec::with_capacity(rest);
        Read::take(&mut *r, rest as u64).read_to_end(&mut data)?;
        if data.len() != rest {
            return Err(bad("stream ended inside a record"));
        }
        Record::from_parts(tag, &fields[..n], data).map(|rec| Some(Incoming::Record(rec)))
    }
}

/// The head of a [`Record::ShmWrite`] of `len` data bytes (which complete its frame): for a
/// sender that writes the data from elsewhere, such as straight from a file.
pub fn shm_write_head(id: u32, offset: u64, len: usize) -> io::Result<[u8; SHM_WRITE_HEAD]> {
    let frame = 1 + fields_len(SHM_WRITE) + len;
    if frame > MAX_SHM_FRAME {
        return Err(bad(format!(
            "record of {frame} bytes exceeds {MAX_SHM_FRAME}"
        )));
    }
    let mut h = [0u8; SHM_WRITE_HEAD];
    h[..4].copy_from_slice(&(frame as u32).to_le_bytes());
    h[4] = SHM_WRITE;
    h[5..9].copy_from_slice(&id.to_le_bytes());
    h[9..].copy_from_slice(&offset.to_le_bytes());
    Ok(h)
}

/// Bytes of a [`Record::ShmWrite`]'s head: length, tag, id and offset.
pub const SHM_WRITE_HEAD: usize = 4 + 1 + 12;

/// The local ends of transfers whose data arrives from the other side of the stream (each a
/// descriptor to write `PipeData` into), by the id this side gave them.
#[derive(Default)]
pub struct Pipes {
    open: std::collections::HashMap<u32, std::fs::File>,
    next: u32,
}

impl Pipes {
    /// Registers `f` and returns its id (to send in a `PipeWrite` record).
    pub fn add(&mut self, f: std::fs::File) -> io::Result<u32> {
        if self.open.len() >= MAX_IDS {
            return Err(io::Error::other("too many open transfers"));
        }
        self.next = self.next.wrapping_add(1);
        self.open.insert(self.next, f);
        Ok(self.next)
    }

    /// Registers `f` under an id the other side chose (cross-domain's read pipes).
    pub fn insert(&mut self, id: u32, f: std::fs::File) -> io::Result<()> {
        if self.open.len() >= MAX_IDS {
            return Err(io::Error::other("too many open transfers"));
        }
        self.open.insert(id, f);
        Ok(())
    }

    /// `PipeData`: writes into transfer `id`; a reader that went away ends the transfer.
    pub fn deliver(&mut self, id: u32, data: &[u8]) {
        if let Some(f) = self.open.get_mut(&id) {
            if f.write_all(data).is_err() {
                self.open.remove(&id);
            }
        }
    }

    /// `PipeClose`: the writer is done; closing our end tells the reader.
    pub fn close(&mut self, id: u32) {
        self.open.remove(&id);
    }

    /// Transfers open.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

/// Streams what arrives on `r`, the read end of a transfer pipe, as `PipeData` records under
/// `id`, then `PipeClose`. `send` writes records to the stream; an error there ends the pump.
pub fn pump_pipe(r: std::fs::File, id: u32, mut send: impl FnMut(&[Record]) -> io::Result<()>) {
    pump(r, MAX_CHUNK, |data| {
        send(&[if data.is_empty() {
            Record::PipeClose { id }
        } else {
            Record::PipeData {
                id,
                data: data.to_vec(),
            }
        }])
    })
}

/// Reads `r` until its end (or an error) and hands each chunk of at most `chunk` bytes to
/// `send`, then an empty one for the end. Stops early when `send` fails.
pub fn pump(mut r: std::fs::File, chunk: usize, mut send: impl FnMut(&[u8]) -> io::Result<()>) {
    let mut buf = vec![0u8; chunk.max(1)];
    loop {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if send(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = send(&[]);
}

/// Splits `data` into `ShmWrite` records of at most [`MAX_SHM_CHUNK`] bytes.
pub fn shm_writes(id: u32, offset: u64, data: &[u8]) -> impl Iterator<Item = Record> + '_ {
    data.chunks(MAX_SHM_CHUNK)
        .enumerate()
        .map(move |(i, c)| Record::ShmWrite {
            id,
            offset: offset + (i * MAX_SHM_CHUNK) as u64,
            data: c.to_vec(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_roundtrip() {
        let records = [
            Record::Hello { version: 1 },
            Record::Wl {
                fds: 0,
                data: vec![1, 2, 3],
            },
            Record::Wl {
                fds: 28,
                data: vec![4],
            },
            Record::ShmNew { id: 7, size: 4096 },
            Record::ShmResize { id: 7, size: 8192 },
            Record::ShmWrite {
                id: 7,
                offset: 100,
                data: vec![9; 50],
            },
            Record::ShmDrop { id: 7 },
            Record::PipeWrite { id: 3 },
            Record::PipeData {
                id: 3,
                data: b"text".to_vec(),
            },
            Record::PipeClose { id: 3 },
            Record::Blob(b"xkb_keymap {}".to_vec()),
        ];
        for r in records {
            let bytes = r.encode().unwrap();
            assert_eq!(Record::read(&mut &bytes[..]).unwrap(), Some(r));
        }
    }

    #[test]
    fn hostile_records_are_errors() {
        let cases: Vec<Vec<u8>> = vec![
            vec![0, 0, 0, 0, 1],
            u32::MAX.to_le_bytes().iter().copied().chain([2]).collect(),
            vec![2, 0, 0, 0, 99, 0],
            vec![5, 0, 0, 0, HELLO, 1, 0, 0],
            [
                13u32.to_le_bytes().to_vec(),
                vec![SHM_NEW],
                1u32.to_le_bytes().to_vec(),
                u64::MAX.to_le_bytes().to_vec(),
            ]
            .concat(),
            vec![3, 0, 0, 0, SHM_WRITE, 1, 2],
            // Over the frame of its kind: an shm write, and other data past the smaller one.
            [
                &((MAX_SHM_FRAME + 1) as u32).to_le_bytes()[..],
                &[SHM_WRITE],
            ]
            .concat(),
            [&((MAX_FRAME + 1) as u32).to_le_bytes()[..], &[PIPE_DATA]].concat(),
            vec![9, 0],
            // Wayland bytes without their count, with more fds than a batch, with fds only.
            vec![1, 0, 0, 0, WL],
            vec![3, 0, 0, 0, WL, 29, 1],
            vec![2, 0, 0, 0, WL, 1],
        ];
        for c in cases {
            assert!(Record::read(&mut &c[..]).is_err(), "{c:?} accepted");
        }
    }

    /// A receiver that puts an shm write's data elsewhere gets its fields first and the data
    /// exactly next; a head made apart from its data frames the same record.
    #[test]
    fn an_shm_write_stops_before_its_data() {
        let w = Record::ShmWrite {
            id: 4,
            offset: 1 << 33,
            data: vec![7; 300],
        };
        let mut bytes = w.encode().unwrap();
        assert_eq!(
            shm_write_head(4, 1 << 33, 300).unwrap()[..],
            bytes[..SHM_WRITE_HEAD]
        );
        bytes.extend(Record::ShmDrop { id: 4 }.encode().unwrap());
        let mut r = &bytes[..];
        assert_eq!(
            Incoming::read(&mut r).unwrap(),
            Some(Incoming::ShmWrite {
                id: 4,
                offset: 1 << 33,
                len: 300
            })
        );
        assert_eq!(r.len(), 300 + 9);
        r = &r[300..];
        assert_eq!(
            Incoming::read(&mut r).unwrap(),
            Some(Incoming::Record(Record::ShmDrop { id: 4 }))
        );
        assert_eq!(Incoming::read(&mut r).unwrap(), None);
        assert!(shm_write_head(1, 0, MAX_SHM_CHUNK).is_ok());
        assert!(shm_write_head(1, 0, MAX_SHM_CHUNK + 1).is_err());
        // Other records stay within the smaller frame.
        let big = Record::PipeData {
            id: 1,
            data: vec![0; MAX_CHUNK + 64],
        };
        assert!(big.encode().is_err());
    }

    #[test]
    fn shm_writes_are_chunked() {
        let data = vec![1u8; MAX_SHM_CHUNK * 2 + 5];
        let recs: Vec<_> = shm_writes(1, 10, &data).collect();
        assert_eq!(recs.len(), 3);
        for r in &recs {
            assert!(r.encode().is_ok());
        }
        assert!(
            matches!(recs[2], Record::ShmWrite { offset, .. } if offset == 10 + 2 * MAX_SHM_CHUNK as u64)
        );
    }
}

/// Sending and receiving bytes with file descriptors over a Unix socket (SCM_RIGHTS).
pub mod fdpass {
    use std::io::{self, IoSlice, IoSliceMut};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::os::unix::net::UnixStream;

    use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

    /// libwayland's limit of fds per message batch.
    pub const MAX_FDS: usize = 28;

    /// Sends all of `data`, with `fds` attached to the first chunk.
    pub fn send(sock: &UnixStream, mut data: &[u8], fds: &[OwnedFd]) -> io::Result<()> {
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let mut first = true;
        while !data.is_empty() || (first && !raw.is_empty()) {
            let iov = [IoSlice::new(data)];
            let cmsg = [ControlMessage::ScmRights(&raw)];
            let cmsgs: &[ControlMessage] = if first && !raw.is_empty() { &cmsg } else { &[] };
            let n = match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
            {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e)),
            };
            first = false;
            data = &data[n..];
            if n == 0 && data.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// Receives up to `buf.len()` bytes and the fds that came with them. 0 bytes: end of stream.
    pub fn recv(sock: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        loop {
            let mut iov = [IoSliceMut::new(buf)];
            match recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    for c in msg.cmsgs().map_err(io::Error::from)? {
                        if let ControlMessageOwned::ScmRights(received) = c {
                            for fd in received {
                                // SAFETY: the kernel just gave us this fd; nothing else owns it.
                                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                            }
                        }
                    }
                    if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "more file descriptors than a Wayland message may carry",
                        ));
                    }
                    return Ok(msg.bytes);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }
}
