//! A pass-through for vhost-user control messages between the VMM and the port's backend,
//! because of one ordering difference.
//!
//! QEMU's virtio-net sends `SET_VRING_ENABLE` when the device is realized and when the guest
//! negotiates features, before `SET_FEATURES` has acknowledged `VHOST_USER_F_PROTOCOL_FEATURES`.
//! The vhost crate's request handler (rightly, by the spec) refuses that message until then and
//! drops the connection; without protocol features, QEMU cannot start vhost at all ("unable to
//! start vhost net: 22"). So this relay holds the early ones back (answering if a reply was
//! asked for) and hands the last one of each ring to the backend right after `SET_FEATURES`
//! has acknowledged protocol features; everything else passes unchanged, descriptors included.
//!
//! Only control messages pass here (frames travel through guest memory and the rings). Every
//! message is bounded (`MAX_PAYLOAD`, `MAX_FDS`); a malformed one ends the connection.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

const HEADER: usize = 12;
const MAX_PAYLOAD: usize = 0x1000;
const MAX_FDS: usize = 32;
const SET_FEATURES: u32 = 2;
const SET_VRING_ENABLE: u32 = 18;
const PROTOCOL_FEATURES: u64 = 1 << 30;
const FLAG_VERSION: u32 = 0x1;
const FLAG_REPLY: u32 = 0x4;
const FLAG_NEED_REPLY: u32 = 0x8;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading a vhost-user message")]
    Recv(#[source] Errno),
    #[error("writing a vhost-user message")]
    Send(#[source] Errno),
    #[error("waiting for vhost-user messages")]
    Poll(#[source] Errno),
    #[error("a vhost-user message of {0} bytes is too large")]
    TooLarge(usize),
}

/// One message: header, payload, descriptors.
struct Message {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
}

impl Message {
    fn word(&self, i: usize) -> u32 {
        let mut w = [0u8; 4];
        if let Some(b) = self.bytes.get(i * 4..i * 4 + 4) {
            w.copy_from_slice(b);
        }
        u32::from_le_bytes(w)
    }
}

/// Reads exactly `buf.len()` bytes, collecting any descriptors; `Ok(false)` at end of stream
/// before the first byte.
fn read_exact(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> Result<bool, RelayError> {
    let mut got = 0;
    while got < buf.len() {
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        let mut iov = [IoSliceMut::new(rest)];
        let msg = match recvmsg::<()>(fd, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(RelayError::Recv(e)),
        };
        for c in msg.cmsgs().map_err(RelayError::Recv)? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for f in raw {
                    // SAFETY: the kernel has just installed `f` in this process for us.
                    fds.push(unsafe { OwnedFd::from_raw_fd(f) });
                }
            }
        }
        if msg.bytes == 0 {
            return if got == 0 {
                Ok(false)
            } else {
                Err(RelayError::Recv(Errno::EPIPE))
            };
        }
        got += msg.bytes;
        if fds.len() > MAX_FDS {
            return Err(RelayError::TooLarge(fds.len()));
        }
    }
    Ok(true)
}

fn read_message(fd: RawFd) -> Result<Option<Message>, RelayError> {
    let mut fds = Vec::new();
    let mut header = [0u8; HEADER];
    if !read_exact(fd, &mut header, &mut fds)? {
        return Ok(None);
    }
    let size = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if size > MAX_PAYLOAD {
        return Err(RelayError::TooLarge(size));
    }
    let mut bytes = vec![0u8; HEADER + size];
    bytes[..HEADER].copy_from_slice(&header);
    if size > 0 && !read_exact(fd, &mut bytes[HEADER..], &mut fds)? {
        return Err(RelayError::Recv(Errno::EPIPE));
    }
    Ok(Some(Message { bytes, fds }))
}

fn write_message(fd: RawFd, msg: &Message) -> Result<(), RelayError> {
    let raw: Vec<RawFd> = msg.fds.iter().map(|f| f.as_raw_fd()).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let mut sent = 0;
    while sent < msg.bytes.len() {
        let cmsgs: &[ControlMessage] = if sent == 0 && !raw.is_empty() {
            &rights
        } else {
            &[]
        };
        let Some(rest) = msg.bytes.get(sent..) else {
            break;
        };
        match sendmsg::<()>(
            fd,
            &[IoSlice::new(rest)],
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(RelayError::Send(e)),
        }
    }
    Ok(())
}

/// What to do with a message from the VMM.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    /// Pass, then send these to the backend (replayed early enables).
    PassThen(Vec<Vec<u8>>),
    Drop,
    /// Drop, and answer the VMM with this (an ack of success).
    Answer(Vec<u8>),
}

/// The relay's memory: whether protocol features have been acknowledged.
#[derive(Debug, Default)]
struct Filter {
    protocol_acked: bool,
    /// The last early SET_VRING_ENABLE per ring (body without NEED_REPLY), replayed once
    /// protocol features are acknowledged: QEMU does not always repeat them.
    early: Vec<(u32, Vec<u8>)>,
}

/// Rings a port has (RX, TX); bounds what the relay remembers.
const MAX_RINGS: usize = 2;

impl Filter {
    fn judge(&mut self, msg: &Message) -> Verdict {
        let request = msg.word(0);
        let flags = msg.word(1);
        if request == SET_FEATURES {
            let mut v = [0u8; 8];
            if let Some(b) = msg.bytes.get(HEADER..HEADER + 8) {
                v.copy_from_slice(b);
            }
            self.protocol_acked = u64::from_le_bytes(v) & PROTOCOL_FEATURES != 0;
            if self.protocol_acked && !self.early.is_empty() {
                let replay = std::mem::take(&mut self.early);
                return Verdict::PassThen(replay.into_iter().map(|(_, m)| m).collect());
            }
            return Verdict::Pass;
        }
        if request == SET_VRING_ENABLE && !self.protocol_acked {
            let index = msg.word(3);
            if (index as usize) < MAX_RINGS {
                let mut copy = msg.bytes.clone();
                if let Some(f) = copy.get_mut(4..8) {
                    f.copy_from_slice(&(flags & !FLAG_NEED_REPLY).to_le_bytes());
                }
                self.early.retain(|(i, _)| *i != index);
                self.early.push((index, copy));
            }
            if flags & FLAG_NEED_REPLY != 0 {
                let mut reply = Vec::with_capacity(HEADER + 8);
                reply.extend_from_slice(&request.to_le_bytes());
                reply.extend_from_slice(&(FLAG_VERSION | FLAG_REPLY).to_le_bytes());
                reply.extend_from_slice(&8u32.to_le_bytes());
                reply.extend_from_slice(&0u64.to_le_bytes());
                return Verdict::Answer(reply);
            }
            return Verdict::Drop;
        }
        Verdict::Pass
    }
}

/// Relays between the VMM's connection and the backend's until either ends.
pub fn run(vmm: &OwnedFd, backend: &OwnedFd) -> Result<(), RelayError> {
    let mut filter = Filter::default();
    loop {
        let mut fds = [
            PollFd::new(std::os::fd::AsFd::as_fd(vmm), PollFlags::POLLIN),
            PollFd::new(std::os::fd::AsFd::as_fd(backend), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(RelayError::Poll(e)),
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        let (from_vmm, from_backend) = (ready(&fds[0]), ready(&fds[1]));
        if from_vmm {
            let Some(msg) = read_message(vmm.as_raw_fd())? else {
                return Ok(());
            };
            match filter.judge(&msg) {
                Verdict::Pass => write_message(backend.as_raw_fd(), &msg)?,
                Verdict::PassThen(more) => {
                    write_message(backend.as_raw_fd(), &msg)?;
                    for bytes in more {
                        write_message(
                            backend.as_raw_fd(),
                            &Message {
                                bytes,
                                fds: Vec::new(),
                            },
                        )?;
                    }
                }
                Verdict::Drop => {}
                Verdict::Answer(bytes) => write_message(
                    vmm.as_raw_fd(),
                    &Message {
                        bytes,
                        fds: Vec::new(),
                    },
                )?,
            }
        }
        if from_backend {
            let Some(msg) = read_message(backend.as_raw_fd())? else {
                return Ok(());
            };
            write_message(vmm.as_raw_fd(), &msg)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(request: u32, flags: u32, payload: &[u8]) -> Message {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&request.to_le_bytes());
        bytes.extend_from_slice(&flags.to_le_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(payload);
        Message {
            bytes,
            fds: Vec::new(),
        }
    }

    #[test]
    fn early_vring_enable_is_dropped_later_ones_pass() {
        let mut f = Filter::default();
        let enable = msg(SET_VRING_ENABLE, 1, &[0; 8]);
        assert_eq!(f.judge(&enable), Verdict::Drop);
        let ask = msg(SET_VRING_ENABLE, 1 | FLAG_NEED_REPLY, &[0; 8]);
        let Verdict::Answer(reply) = f.judge(&ask) else {
            panic!("no answer");
        };
        assert_eq!(reply.len(), HEADER + 8);
        assert_eq!(&reply[4..8], &(FLAG_VERSION | FLAG_REPLY).to_le_bytes());
        // Features without protocol features: still early.
        assert_eq!(
            f.judge(&msg(SET_FEATURES, 1, &1u64.to_le_bytes())),
            Verdict::Pass
        );
        assert_eq!(f.judge(&enable), Verdict::Drop);
        // Acknowledged: the last early enable of each ring is replayed, without NEED_REPLY.
        let Verdict::PassThen(replay) =
            f.judge(&msg(SET_FEATURES, 1, &PROTOCOL_FEATURES.to_le_bytes()))
        else {
            panic!("no replay");
        };
        assert_eq!(replay.len(), 1);
        assert_eq!(&replay[0][4..8], &1u32.to_le_bytes());
        assert_eq!(f.judge(&enable), Verdict::Pass);
        assert_eq!(f.judge(&msg(3, 1, &[])), Verdict::Pass);
    }

    #[test]
    fn messages_with_descriptors_cross_intact_and_oversize_is_refused() {
        use std::os::unix::net::UnixStream;
        let (a, b) = UnixStream::pair().unwrap();
        let a = OwnedFd::from(a);
        let b = OwnedFd::from(b);
        let file = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let mut m = msg(5, 1, &[7u8; 40]);
        m.fds.push(file);
        write_message(a.as_raw_fd(), &m).unwrap();
        let got = read_message(b.as_raw_fd()).unwrap().unwrap();
        assert_eq!(got.bytes, m.bytes);
        assert_eq!(got.fds.len(), 1);
        let mut big = msg(5, 1, &[]);
        big.bytes[8..12].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes());
        write_message(a.as_raw_fd(), &big).unwrap();
        assert!(matches!(
            read_message(b.as_raw_fd()),
            Err(RelayError::TooLarge(_))
        ));
        drop(a);
        assert!(read_message(b.as_raw_fd()).unwrap().is_none());
    }
}
