//! Reading Wayland wire messages with bounds, by the interface descriptions of wayland-rs.

use std::collections::HashMap;

use wayland_backend::protocol::{AllowNull, ArgumentType, Interface, MessageDesc};

/// Header: object id, then size (upper 16 bits) and opcode (lower 16 bits).
pub const HEADER: usize = 8;
/// libwayland's message size limit.
pub const MAX_MESSAGE: usize = 4096;
/// Most objects one client may have (a bound far above real apps).
pub const MAX_OBJECTS: usize = 100_000;

/// One parsed argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Int(i32),
    Uint(u32),
    Fixed(i32),
    Str(Option<String>),
    Object(u32),
    NewId(u32),
    Array(usize),
    Fd,
}

/// The first complete message in `buf`: (sender, opcode, total length). `Ok(None)` when more
/// bytes are needed.
pub fn next_message(buf: &[u8]) -> Result<Option<(u32, u16, usize)>, String> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let sender = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let word = u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let size = (word >> 16) as usize;
    let opcode = (word & 0xffff) as u16;
    if !(HEADER..=MAX_MESSAGE).contains(&size) || !size.is_multiple_of(4) {
        return Err(format!("message size {size} is invalid"));
    }
    if buf.len() < size {
        return Ok(None);
    }
    Ok(Some((sender, opcode, size)))
}

/// Hands every complete message at the front of `buf` to `f` (sender, opcode, the whole
/// message, writable) and removes it; a partial message stays for more bytes.
pub fn drain_messages(
    buf: &mut Vec<u8>,
    mut f: impl FnMut(u32, u16, &mut [u8]) -> Result<(), String>,
) -> Result<(), String> {
    while let Some((sender, opcode, len)) = next_message(buf)? {
        f(sender, opcode, &mut buf[..len])?;
        buf.drain(..len);
    }
    Ok(())
}

/// Parses the body of a message (after the header) by its signature.
pub fn parse_args(sig: &[ArgumentType], body: &[u8]) -> Result<Vec<Arg>, String> {
    Ok(parse_args_at(sig, body)?.0)
}

/// Like [`parse_args`], with the byte offset in `body` where each argument starts (object
/// ids are rewritten there when the proxy translates them).
pub fn parse_args_at(sig: &[ArgumentType], body: &[u8]) -> Result<(Vec<Arg>, Vec<usize>), String> {
    let mut out = Vec::with_capacity(sig.len());
    let mut offsets = Vec::with_capacity(sig.len());
    let mut at = 0usize;
    let word = |at: &mut usize| -> Result<u32, String> {
        let b = body
            .get(*at..*at + 4)
            .ok_or_else(|| "message shorter than its signature".to_string())?;
        *at += 4;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    for t in sig {
        offsets.push(at);
        out.push(match t {
            ArgumentType::Int => Arg::Int(word(&mut at)? as i32),
            ArgumentType::Uint => Arg::Uint(word(&mut at)?),
            ArgumentType::Fixed => Arg::Fixed(word(&mut at)? as i32),
            ArgumentType::Object(_) => Arg::Object(word(&mut at)?),
            ArgumentType::NewId => Arg::NewId(word(&mut at)?),
            ArgumentType::Fd => Arg::Fd,
            ArgumentType::Str(null) => {
                let len = word(&mut at)? as usize;
                if len == 0 {
                    if *null == AllowNull::No {
                        return Err("null string where none is allowed".into());
                    }
                    Arg::Str(None)
                } else {
                    let padded = len.div_ceil(4) * 4;
                    let bytes = body
                        .get(at..at + padded)
                        .ok_or("string runs past the message")?;
                    at += padded;
                    if bytes[len - 1] != 0 {
                        return Err("string without its terminating NUL".into());
                    }
                    let s = std::str::from_utf8(&bytes[..len - 1])
                        .map_err(|_| "string is not UTF-8")?;
                    Arg::Str(Some(s.to_string()))
                }
            }
            ArgumentType::Array => {
                let len = word(&mut at)? as usize;
                let padded = len.div_ceil(4) * 4;
                if body.len() < at + padded {
                    return Err("array runs past the message".into());
                }
                at += padded;
                Arg::Array(len)
            }
        });
    }
    if at != body.len() {
        return Err("message longer than its signature".into());
    }
    Ok((out, offsets))
}

/// Overwrites the word at `offset` of a message body.
pub fn put_word(body: &mut [u8], offset: usize, value: u32) {
    if let Some(w) = body.get_mut(offset..offset + 4) {
        w.copy_from_slice(&value.to_ne_bytes());
    }
}

/// A message: header (sender, size, opcode) and body words.
pub fn message_bytes(sender: u32, opcode: u16, body: &[u8]) -> Vec<u8> {
    let size = (HEADER + body.len()) as u32;
    let mut m = Vec::with_capacity(size as usize);
    m.extend(sender.to_ne_bytes());
    m.extend(((size << 16) | opcode as u32).to_ne_bytes());
    m.extend(body);
    m
}

/// Words in the wire's (native) byte order: a message body of uint, int and object arguments.
pub fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// A string argument: its length with the NUL, the bytes, the NUL, padding to a word.
pub fn string_arg(s: &str) -> Vec<u8> {
    let mut b = ((s.len() + 1) as u32).to_ne_bytes().to_vec();
    b.extend(s.as_bytes());
    b.push(0);
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
    b
}

/// Word `i` of a message body (after the header), if the body has it.
pub fn word_at(body: &[u8], i: usize) -> Option<u32> {
    body.get(i * 4..i * 4 + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Argument `i` as an integer (int or uint).
pub fn int(args: &[Arg], i: usize) -> Result<i64, String> {
    match args.get(i) {
        Some(Arg::Int(v)) => Ok(*v as i64),
        Some(Arg::Uint(v)) => Ok(*v as i64),
        _ => Err("argument type mismatch".into()),
    }
}

/// Argument `i` as an object id (object or new_id).
pub fn object(args: &[Arg], i: usize) -> Result<u32, String> {
    match args.get(i) {
        Some(Arg::Object(v)) | Some(Arg::NewId(v)) => Ok(*v),
        _ => Err("argument type mismatch".into()),
    }
}

/// The objects of one client connection and their interfaces.
pub struct Objects {
    map: HashMap<u32, &'static Interface>,
}

impl Objects {
    pub fn new(display: &'static Interface) -> Objects {
        let mut map = HashMap::new();
        map.insert(1, display);
        Objects { map }
    }

    /// How many objects the connection has (wl_display included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never: wl_display is always there.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, id: u32) -> Option<&'static Interface> {
        self.map.get(&id).copied()
    }

    pub fn insert(&mut self, id: u32, iface: &'static Interface) -> Result<(), String> {
        if id == 0 {
            return Err("new object with id 0".into());
        }
        if self.map.len() >= MAX_OBJECTS {
            return Err(format!("more than {MAX_OBJECTS} objects"));
        }
        self.map.insert(id, iface);
        Ok(())
    }

    pub fn remove(&mut self, id: u32) {
        if id != 1 {
            self.map.remove(&id);
        }
    }
}

/// The description of message `opcode` of `iface` in one direction.
pub fn message(
    iface: &'static Interface,
    opcode: u16,
    request: bool,
) -> Result<&'static MessageDesc, String> {
    let list = if request {
        iface.requests
    } else {
        iface.events
    };
    list.get(opcode as usize).ok_or_else(|| {
        format!(
            "{} has no {} {opcode}",
            iface.name,
            if request { "request" } else { "event" }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wayland_client::protocol::__interfaces::*;

    fn msg(sender: u32, opcode: u16, body: &[u8]) -> Vec<u8> {
        let size = (HEADER + body.len()) as u32;
        let mut m = sender.to_ne_bytes().to_vec();
        m.extend(((size << 16) | opcode as u32).to_ne_bytes());
        m.extend(body);
        m
    }

    use super::string_arg as string;

    #[test]
    fn parses_a_bind() {
        let body = [
            7u32.to_ne_bytes().to_vec(),
            string("wl_compositor"),
            4u32.to_ne_bytes().to_vec(),
            3u32.to_ne_bytes().to_vec(),
        ]
        .concat();
        let m = msg(2, 0, &body);
        let (sender, op, len) = next_message(&m).unwrap().unwrap();
        assert_eq!((sender, op, len), (2, 0, m.len()));
        let desc = message(&WL_REGISTRY_INTERFACE, op, true).unwrap();
        let args = parse_args(desc.signature, &m[HEADER..]).unwrap();
        assert_eq!(
            args,
            [
                Arg::Uint(7),
                Arg::Str(Some("wl_compositor".into())),
                Arg::Uint(4),
                Arg::NewId(3)
            ]
        );
    }

    #[test]
    fn hostile_messages_are_errors() {
        // Sizes: too small, not a multiple of 4, beyond the limit.
        for word in [4u32 << 16, 10 << 16, 8192 << 16] {
            let mut m = 1u32.to_ne_bytes().to_vec();
            m.extend(word.to_ne_bytes());
            assert!(next_message(&m).is_err());
        }
        let bind = message(&WL_REGISTRY_INTERFACE, 0, true).unwrap();
        for body in [
            vec![],                                                                // short
            [7u32.to_ne_bytes().to_vec(), 100u32.to_ne_bytes().to_vec()].concat(), // string past end
            [7u32.to_ne_bytes().to_vec(), 0u32.to_ne_bytes().to_vec()].concat(),   // null string
            [
                7u32.to_ne_bytes().to_vec(),
                2u32.to_ne_bytes().to_vec(),
                b"ab\0\0".to_vec(),
            ]
            .concat(), // no NUL
        ] {
            assert!(parse_args(bind.signature, &body).is_err(), "{body:?}");
        }
        // Trailing garbage after the arguments.
        let destroy = message(&WL_SURFACE_INTERFACE, 0, true).unwrap();
        assert!(parse_args(destroy.signature, &[0, 0, 0, 0]).is_err());
        // Unknown opcodes.
        assert!(message(&WL_SURFACE_INTERFACE, 999, true).is_err());
        // Partial messages wait for more bytes.
        assert_eq!(next_message(&msg(1, 0, &[0; 8])[..10]).unwrap(), None);
    }
}

/// Test messages shared by both transports' tests.
#[cfg(test)]
pub(crate) mod test_messages {
    pub use super::words;

    /// The body of wl_registry.bind(1, `name`, `version`, new id `id`).
    pub fn bind_body(name: &str, version: u32, id: u32) -> Vec<u8> {
        let mut b = words(&[1, name.len() as u32 + 1]);
        b.extend(name.as_bytes());
        b.resize(b.len() + 4 - name.len() % 4, 0);
        b.extend(words(&[version, id]));
        b
    }
}
