//! Messages from the main process to a port child, over a SOCK_SEQPACKET pair: one message per
//! packet, a fixed 16-byte body and, for `Connect`, three descriptors (SCM_RIGHTS).
//!
//! The main process only ever sends descriptors and ring shapes; frames never pass through it.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};

use crate::ring::{Geometry, RingError};

const BODY: usize = 16;
const CONNECT: u32 = 1;
const DISCONNECT: u32 = 2;
const TRAP: u32 = 3;
const HANG: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("creating the control socket pair")]
    Pair(#[source] Errno),
    #[error("sending a control message")]
    Send(#[source] Errno),
    #[error("receiving a control message")]
    Recv(#[source] Errno),
    #[error("the main process closed the control socket")]
    Closed,
    #[error("a malformed control message ({0})")]
    Malformed(&'static str),
    #[error("a control message names an impossible ring")]
    Geometry(#[source] RingError),
}

/// What the main process tells a port child.
#[derive(Debug)]
pub enum ToChild {
    /// New rings to and from `peer`: `out` is the ring this port produces into, rung with the
    /// peer's doorbell; `inp` the ring it consumes. Replaces any rings the port had with it.
    Connect {
        peer: u32,
        geometry: Geometry,
        out: OwnedFd,
        peer_doorbell: OwnedFd,
        inp: OwnedFd,
    },
    /// The peer's child died; its rings are gone.
    Disconnect { peer: u32 },
    /// Test only (the switch runs with `--test-trigger`): make a forbidden system call.
    Trap,
    /// Test only: stop the worker thread for good, so the heartbeat stops.
    Hang,
}

/// A connected SOCK_SEQPACKET pair: (main's end, child's end).
pub fn pair() -> Result<(OwnedFd, OwnedFd), ControlError> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ControlError::Pair)
}

fn body(kind: u32, a: u32, b: u32, c: u32) -> [u8; BODY] {
    let mut out = [0u8; BODY];
    for (i, v) in [kind, a, b, c].into_iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    out
}

pub fn send(sock: BorrowedFd<'_>, msg: &ToChild) -> Result<(), ControlError> {
    let (bytes, fds): ([u8; BODY], Vec<RawFd>) = match msg {
        ToChild::Connect {
            peer,
            geometry,
            out,
            peer_doorbell,
            inp,
        } => (
            body(
                CONNECT,
                *peer,
                geometry.slots,
                u32::try_from(geometry.slot_data).map_err(|_| ControlError::Malformed("slot"))?,
            ),
            vec![out.as_raw_fd(), peer_doorbell.as_raw_fd(), inp.as_raw_fd()],
        ),
        ToChild::Disconnect { peer } => (body(DISCONNECT, *peer, 0, 0), Vec::new()),
        ToChild::Trap => (body(TRAP, 0, 0, 0), Vec::new()),
        ToChild::Hang => (body(HANG, 0, 0, 0), Vec::new()),
    };
    let iov = [IoSlice::new(&bytes)];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
        .map_err(ControlError::Send)?;
    Ok(())
}

/// Receives one message without blocking; `Ok(None)` when none is waiting.
pub fn recv(sock: BorrowedFd<'_>) -> Result<Option<ToChild>, ControlError> {
    let mut bytes = [0u8; BODY];
    let mut cmsg_buf = nix::cmsg_space!([RawFd; 3]);
    let (len, truncated, mut fds) = {
        let mut iov = [IoSliceMut::new(&mut bytes)];
        let msg = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_buf),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(Errno::EAGAIN) => return Ok(None),
            Err(e) => return Err(ControlError::Recv(e)),
        };
        let mut fds: Vec<OwnedFd> = Vec::new();
        for c in msg.cmsgs().map_err(ControlError::Recv)? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for fd in raw {
                    // SAFETY: the kernel has just installed `fd` in this process for us; nothing
                    // else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        let truncated = msg
            .flags
            .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
        (msg.bytes, truncated, fds)
    };
    if len == 0 && fds.is_empty() {
        return Err(ControlError::Closed);
    }
    if truncated || len != BODY {
        return Err(ControlError::Malformed("size"));
    }
    let word = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&bytes[i * 4..i * 4 + 4]);
        u32::from_le_bytes(w)
    };
    match word(0) {
        CONNECT => {
            if fds.len() != 3 {
                return Err(ControlError::Malformed("descriptors"));
            }
            let geometry =
                Geometry::new(word(2), word(3) as usize).map_err(ControlError::Geometry)?;
            let inp = fds.pop().ok_or(ControlError::Malformed("descriptors"))?;
            let peer_doorbell = fds.pop().ok_or(ControlError::Malformed("descriptors"))?;
            let out = fds.pop().ok_or(ControlError::Malformed("descriptors"))?;
            Ok(Some(ToChild::Connect {
                peer: word(1),
                geometry,
                out,
                peer_doorbell,
                inp,
            }))
        }
        DISCONNECT if fds.is_empty() => Ok(Some(ToChild::Disconnect { peer: word(1) })),
        TRAP if fds.is_empty() => Ok(Some(ToChild::Trap)),
        HANG if fds.is_empty() => Ok(Some(ToChild::Hang)),
        _ => Err(ControlError::Malformed("kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{self, Consumer, Doorbell, Producer};
    use std::os::fd::AsFd;

    #[test]
    fn connect_carries_working_rings() {
        let (main, child) = pair().unwrap();
        let g = Geometry::new(8, 64).unwrap();
        let peer_bell = Doorbell::new().unwrap();
        let out = ring::create("o", g).unwrap();
        let inp = ring::create("i", g).unwrap();
        // The peer keeps its own copies: it consumes `out` and produces into `inp`.
        let peer_in = Consumer::open(out.try_clone().unwrap(), g).unwrap();
        let msg = ToChild::Connect {
            peer: 2,
            geometry: g,
            out,
            peer_doorbell: peer_bell.dup_fd().unwrap(),
            inp,
        };
        send(main.as_fd(), &msg).unwrap();
        drop(msg);
        let Some(ToChild::Connect {
            peer,
            geometry,
            out,
            peer_doorbell,
            inp: _,
        }) = recv(child.as_fd()).unwrap()
        else {
            panic!("not a connect");
        };
        assert_eq!((peer, geometry), (2, g));
        let mut p = Producer::open(out, Doorbell::from_fd(peer_doorbell), g).unwrap();
        assert!(p.push(b"through the handoff").unwrap());
        p.notify();
        assert_eq!(peer_bell.take(), Some(1));
        let mut buf = [0u8; 64];
        assert_eq!(peer_in.peek(&mut buf).unwrap(), Some(19));
        assert!(recv(child.as_fd()).unwrap().is_none());
    }

    #[test]
    fn simple_messages_and_close() {
        let (main, child) = pair().unwrap();
        send(main.as_fd(), &ToChild::Disconnect { peer: 7 }).unwrap();
        send(main.as_fd(), &ToChild::Trap).unwrap();
        assert!(matches!(
            recv(child.as_fd()).unwrap(),
            Some(ToChild::Disconnect { peer: 7 })
        ));
        assert!(matches!(recv(child.as_fd()).unwrap(), Some(ToChild::Trap)));
        drop(main);
        assert!(matches!(recv(child.as_fd()), Err(ControlError::Closed)));
    }

    #[test]
    fn malformed_messages_are_refused() {
        let (main, child) = pair().unwrap();
        let raw = |b: &[u8]| {
            sendmsg::<()>(
                main.as_raw_fd(),
                &[IoSlice::new(b)],
                &[],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
        };
        raw(&[1, 2, 3]);
        raw(&body(99, 0, 0, 0));
        raw(&body(CONNECT, 1, 8, 64)); // no descriptors
        raw(&body(CONNECT, 1, 3, 64)); // (also no descriptors)
        for _ in 0..4 {
            assert!(matches!(
                recv(child.as_fd()),
                Err(ControlError::Malformed(_))
            ));
        }
    }
}
