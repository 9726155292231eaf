//! The wire protocol between the host (vmm-glue) and `bulkhead-agent` inside a guest.
//!
//! Transport: a vsock stream (hybrid vsock through a Unix socket on QEMU hosts). Each connection
//! starts with both sides sending [`HostMessage::Hello`] / [`GuestMessage::Hello`] with their
//! protocol version; then the host sends one request and reads until the guest's final message.
//!
//! Framing: `[u32 little-endian length][u8 kind][payload]`, where `length` counts the kind byte
//! and the payload and never exceeds [`MAX_FRAME`]. Kind [`FrameKind::Message`] carries one JSON
//! message; [`FrameKind::Stdout`] / [`FrameKind::Stderr`] carry raw output bytes of a command.
//! Anything else is an error: a peer that sends an unknown kind, an oversized frame or a message
//! that does not parse is disconnected, never trusted and never a panic.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The version both sides speak; a mismatch ends the connection with a clear error.
pub const PROTOCOL_VERSION: u32 = 1;

/// The vsock port the agent listens on in the guest.
pub const AGENT_PORT: u32 = 1024;

/// The host port the agent connects to once when it is ready (hybrid vsock: the Unix socket
/// `<uds-path>_1025` on the host).
pub const READY_PORT: u32 = 1025;

/// Largest frame (kind byte + payload) either side accepts.
pub const MAX_FRAME: usize = 256 * 1024;

/// Most arguments / environment entries in one [`HostMessage::Run`].
pub const MAX_ARGS: usize = 4096;

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    Message = 0,
    Stdout = 1,
    Stderr = 2,
}

impl FrameKind {
    pub fn from_byte(b: u8) -> Option<FrameKind> {
        match b {
            0 => Some(FrameKind::Message),
            1 => Some(FrameKind::Stdout),
            2 => Some(FrameKind::Stderr),
            _ => None,
        }
    }
}

/// Messages from the host to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum HostMessage {
    Hello {
        version: u32,
    },
    /// Run `argv` as the guest user. With `wait`, stream its output and end with
    /// [`GuestMessage::Exited`]; without, answer [`GuestMessage::Started`] and let it run.
    Run {
        argv: Vec<String>,
        #[serde(default)]
        env: Vec<(String, String)>,
        #[serde(default)]
        wait: bool,
    },
    /// How busy the guest is (for auto-shutdown). (Empty struct variants rather than unit
    /// variants, so serde rejects unknown fields in them too.)
    Status {},
    /// Sync and power the guest off.
    Poweroff {},
}

/// Messages from the agent to the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum GuestMessage {
    Hello {
        version: u32,
        /// The agent's own version string.
        agent: String,
    },
    /// Sent once on the ready port when the agent starts listening: boot timings, all in
    /// milliseconds since the guest kernel started.
    Ready {
        init_ms: u64,
        agent_ms: u64,
    },
    Started {
        pid: u32,
    },
    Exited {
        /// Exit code, or `None` when a signal ended the command.
        code: Option<i32>,
        signal: Option<i32>,
    },
    Status {
        /// Commands started through the agent that still run.
        running: u32,
        /// Seconds since the last command ended or started (0 while one runs).
        idle_secs: u64,
        uptime_ms: u64,
    },
    PoweringOff {},
    /// The request failed; `message` says why.
    Error {
        message: String,
    },
}

/// Errors reading a frame.
#[derive(Debug)]
pub enum WireError {
    Io(io::Error),
    /// The peer broke the protocol; the connection must be dropped.
    Protocol(String),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Io(e) => write!(f, "{e}"),
            WireError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for WireError {}

impl From<io::Error> for WireError {
    fn from(e: io::Error) -> Self {
        WireError::Io(e)
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame<M> {
    Message(M),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// Encodes a frame. Payloads longer than the frame limit must be split by the caller
/// ([`output_frames`] does that for command output).
pub fn encode(kind: FrameKind, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    let len = payload.len() + 1;
    if len > MAX_FRAME {
        return Err(WireError::Protocol(format!(
            "frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"
        )));
    }
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Encodes one JSON message frame.
pub fn encode_message<M: Serialize>(msg: &M) -> Result<Vec<u8>, WireError> {
    let json = serde_json::to_vec(msg).map_err(|e| WireError::Protocol(e.to_string()))?;
    encode(FrameKind::Message, &json)
}

/// Encodes command output as as many frames as needed.
pub fn output_frames(kind: FrameKind, data: &[u8]) -> Vec<Vec<u8>> {
    data.chunks(MAX_FRAME - 1)
        .filter_map(|c| encode(kind, c).ok())
        .collect()
}

/// Checks a frame header: returns the kind and the payload length to read next.
pub fn parse_header(header: [u8; 5]) -> Result<(FrameKind, usize), WireError> {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(WireError::Protocol(format!(
            "frame length {len} is outside 1..={MAX_FRAME}"
        )));
    }
    let kind = FrameKind::from_byte(header[4])
        .ok_or_else(|| WireError::Protocol(format!("unknown frame kind {}", header[4])))?;
    Ok((kind, len - 1))
}

/// Decodes a frame payload of `kind`.
pub fn decode<M: for<'de> Deserialize<'de>>(
    kind: FrameKind,
    payload: Vec<u8>,
) -> Result<Frame<M>, WireError> {
    Ok(match kind {
        FrameKind::Message => Frame::Message(
            serde_json::from_slice(&payload)
                .map_err(|e| WireError::Protocol(format!("bad message: {e}")))?,
        ),
        FrameKind::Stdout => Frame::Stdout(payload),
        FrameKind::Stderr => Frame::Stderr(payload),
    })
}

/// Reads one frame from a blocking stream. `Ok(None)` at a clean end of stream.
pub fn read_frame<M: for<'de> Deserialize<'de>, R: Read>(
    r: &mut R,
) -> Result<Option<Frame<M>>, WireError> {
    let mut header = [0u8; 5];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(WireError::Protocol(
                    "stream ended inside a frame header".into(),
                ))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (kind, len) = parse_header(header)?;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload)?;
    decode(kind, payload).map(Some)
}

/// Writes one JSON message frame to a blocking stream.
pub fn write_message<M: Serialize, W: Write>(w: &mut W, msg: &M) -> Result<(), WireError> {
    w.write_all(&encode_message(msg)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_roundtrip_through_frames() {
        let msgs = [
            HostMessage::Hello { version: 1 },
            HostMessage::Run {
                argv: vec!["echo".into(), "hello".into()],
                env: vec![("A".into(), "b".into())],
                wait: true,
            },
            HostMessage::Status {},
            HostMessage::Poweroff {},
        ];
        for m in msgs {
            let bytes = encode_message(&m).unwrap();
            let got: Frame<HostMessage> = read_frame(&mut &bytes[..]).unwrap().unwrap();
            assert_eq!(got, Frame::Message(m));
        }
    }

    #[test]
    fn output_is_split_under_the_limit() {
        let data = vec![7u8; MAX_FRAME * 2 + 10];
        let frames = output_frames(FrameKind::Stdout, &data);
        assert_eq!(frames.len(), 3);
        let mut joined = Vec::new();
        for f in frames {
            assert!(f.len() <= MAX_FRAME + 4);
            match read_frame::<GuestMessage, _>(&mut &f[..]).unwrap().unwrap() {
                Frame::Stdout(d) => joined.extend(d),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn hostile_frames_are_errors() {
        // Oversized length: rejected before anything is allocated.
        let mut big = (u32::MAX).to_le_bytes().to_vec();
        big.push(0);
        assert!(matches!(
            read_frame::<HostMessage, _>(&mut &big[..]),
            Err(WireError::Protocol(_))
        ));
        // Zero length, unknown kind, truncated header and payload, bad JSON, unknown message.
        let cases: Vec<Vec<u8>> = vec![
            vec![0, 0, 0, 0, 0],
            vec![1, 0, 0, 0, 9],
            vec![5, 0],
            vec![9, 0, 0, 0, 0, b'{'],
            encode(FrameKind::Message, b"{not json").unwrap(),
            encode(FrameKind::Message, br#"{"type":"format-disk"}"#).unwrap(),
            encode(FrameKind::Message, br#"{"type":"status","extra":1}"#).unwrap(),
        ];
        for c in cases {
            assert!(
                read_frame::<HostMessage, _>(&mut &c[..]).is_err(),
                "{c:?} was accepted"
            );
        }
        // A clean end of stream is not an error.
        assert!(read_frame::<HostMessage, _>(&mut &[][..])
            .unwrap()
            .is_none());
    }
}
