//! A hostile guest program for the tests: it drives the guest kernel's virtio-gpu directly
//! through the DRM uAPI (`/dev/dri/renderD*`, as the guest user) and sends the host's
//! cross-domain context everything a well-behaved proxy never would: unknown and truncated
//! commands, bad ring indexes, bogus identifiers, oversized and many blobs, many contexts,
//! seeded random commands. Each attack's failures are expected and only counted; what matters
//! is what the host does (the test looks at the compositor and the other VMs).
//!
//!     gpu-hostile [SEED]
//!
//! Prints one line per attack (`attack NAME: N calls, M refused`), then `done`. "Refused"
//! counts what the guest kernel turned down; what the host makes of a submitted command is
//! not reported back to the submitter (the VMM logs it). Exits 1 only when it cannot start (no
//! render node with cross-domain, no context).

use std::io;
use std::path::Path;

use bulkhead_guest::virtgpu::drm::DrmGpu;
use bulkhead_guest::virtgpu::{
    Blob, VirtGpu, BLOB_FLAG_USE_MAPPABLE, BLOB_FLAG_USE_SHAREABLE, BLOB_MEM_GUEST,
    BLOB_MEM_HOST3D, CAPSET_CROSS_DOMAIN,
};

// The cross-domain protocol (rutabaga_gfx's cross_domain_protocol.rs), written by hand here:
// this program must be able to say what the proxy's own types never let it say.
const CMD_INIT: u8 = 1;
const CMD_GET_IMAGE_REQUIREMENTS: u8 = 2;
const CMD_POLL: u8 = 3;
const CMD_SEND: u8 = 4;
const CMD_READ: u8 = 6;
const CMD_WRITE: u8 = 7;
const CHANNEL_TYPE_WAYLAND: u32 = 1;
const RING: u64 = 4096;

/// Counts one attack's calls and the guest kernel's refusals.
struct Tally {
    name: &'static str,
    calls: u32,
    refused: u32,
}

impl Tally {
    fn new(name: &'static str) -> Tally {
        Tally {
            name,
            calls: 0,
            refused: 0,
        }
    }

    fn note<T>(&mut self, r: io::Result<T>) -> Option<T> {
        self.calls += 1;
        match r {
            Ok(v) => Some(v),
            Err(_) => {
                self.refused += 1;
                None
            }
        }
    }

    fn report(self) {
        println!(
            "attack {}: {} calls, {} refused",
            self.name, self.calls, self.refused
        );
    }
}

/// A command: the 8-byte header (cmd, ring_idx, cmd_size, pad) and its body.
fn command(cmd: u8, ring_idx: u8, size: u16, body: &[u32]) -> Vec<u8> {
    let mut v = vec![cmd, ring_idx];
    v.extend_from_slice(&size.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    for w in body {
        v.extend_from_slice(&w.to_le_bytes());
    }
    v
}

/// xorshift64*: the random commands are the same for the same seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A cross-domain context of its own (one open of the render node), with its two rings.
struct Context {
    gpu: DrmGpu,
    query: Option<Blob>,
    channel: Option<Blob>,
}

fn context(node: &Path, rings: u32) -> io::Result<Context> {
    let gpu = DrmGpu::open(node)?;
    gpu.context_init(CAPSET_CROSS_DOMAIN, rings, 1 << 1)?;
    let query = gpu
        .create_blob(BLOB_MEM_GUEST, BLOB_FLAG_USE_MAPPABLE, RING, 0)
        .ok();
    let channel = gpu
        .create_blob(BLOB_MEM_GUEST, BLOB_FLAG_USE_MAPPABLE, RING, 0)
        .ok();
    Ok(Context {
        gpu,
        query,
        channel,
    })
}

impl Context {
    fn res(&self, b: Option<Blob>) -> u32 {
        b.map(|b| b.res_handle).unwrap_or(0)
    }

    /// A proper CMD_INIT: the host connects this context to the VM's Wayland socket.
    fn init(&self) -> io::Result<()> {
        let body = [
            self.res(self.query),
            self.res(self.channel),
            CHANNEL_TYPE_WAYLAND,
        ];
        self.gpu
            .execbuffer(&command(CMD_INIT, 0, 20, &body), &[], 0)
    }
}

fn main() {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_u64);
    let node = match DrmGpu::find_cross_domain() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("gpu-hostile: {e}");
            std::process::exit(1);
        }
    };
    let base = match context(&node, 2) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "gpu-hostile: no cross-domain context on {}: {e}",
                node.display()
            );
            std::process::exit(1);
        }
    };
    println!("gpu-hostile: cross-domain on {}", node.display());

    // Commands before any INIT, unknown commands, truncated and oversized sizes.
    let mut t = Tally::new("unknown-and-truncated-commands");
    for cmd in [0u8, 8, 9, 100, 255, CMD_POLL, CMD_SEND, CMD_READ, CMD_WRITE] {
        for size in [0u16, 1, 7, 8, 12, 4096, 65535] {
            t.note(base.gpu.execbuffer(&command(cmd, 0, size, &[0; 4]), &[], 0));
        }
    }
    for len in [0usize, 1, 3, 4, 7] {
        t.note(base.gpu.execbuffer(&vec![CMD_INIT; len], &[], 0));
    }
    t.report();

    // INIT with bogus ring resources, unknown channel types, then twice.
    let mut t = Tally::new("bad-init");
    for body in [
        [0u32, 0, CHANNEL_TYPE_WAYLAND],
        [0xdead_beef, 0xdead_beef, CHANNEL_TYPE_WAYLAND],
        [
            base.res(base.query),
            base.res(base.query),
            CHANNEL_TYPE_WAYLAND,
        ],
        [base.res(base.query), base.res(base.channel), 77],
        [base.res(base.query), base.res(base.channel), u32::MAX],
    ] {
        if let Ok(c) = context(&node, 2) {
            t.note(c.gpu.execbuffer(&command(CMD_INIT, 0, 20, &body), &[], 0));
        }
    }
    t.note(base.init());
    t.note(base.init());
    t.report();

    // Bad ring indexes: in the execbuffer (the guest kernel checks them against the
    // context's rings) and in the command header (only the host does).
    let mut t = Tally::new("bad-rings");
    for ring in [1u32, 2, 3, 63, 64, 1000, u32::MAX] {
        t.note(
            base.gpu
                .execbuffer(&command(CMD_POLL, 0, 8, &[]), &[], ring),
        );
    }
    for ring in [2u8, 7, 63, 200, 255] {
        t.note(
            base.gpu
                .execbuffer(&command(CMD_POLL, ring, 8, &[]), &[], 0),
        );
        let body = [64u32, 64, u32::from_le_bytes(*b"R8  "), 0];
        t.note(base.gpu.execbuffer(
            &command(CMD_GET_IMAGE_REQUIREMENTS, ring, 24, &body),
            &[],
            0,
        ));
    }
    if let Ok(c) = DrmGpu::open(&node) {
        // Many rings, a poll mask naming rings that do not exist.
        t.note(c.context_init(CAPSET_CROSS_DOMAIN, 64, u64::MAX));
        t.note(c.execbuffer(&command(CMD_POLL, 63, 8, &[]), &[], 63));
    }
    t.report();

    // SEND and WRITE with bogus identifiers, counts beyond the maximum, sizes beyond the
    // command; READ of pipes that do not exist.
    let mut t = Tally::new("bogus-identifiers");
    let send = |n: u32, id: u32, ty: u32, opaque: u32| {
        let mut body = vec![n, opaque];
        body.extend(std::iter::repeat_n(id, 28));
        body.extend(std::iter::repeat_n(ty, 28));
        body.extend(std::iter::repeat_n(4096u32, 28));
        body.extend([0u32; 4]);
        let size = (8 + body.len() * 4) as u16;
        command(CMD_SEND, 0, size, &body)
    };
    for (n, id, ty, opaque) in [
        (1u32, 0u32, 1u32, 0u32),
        (1, 0xffff_fff0, 1, 16),
        (1, 12345, 3, 16),
        (1, 0x8000_0001, 4, 16),
        (28, 7, 1, 0),
        (29, 7, 1, 0),
        (u32::MAX, 1, 1, 0),
        (0, 0, 0, 1 << 20),
        (0, 0, 0, u32::MAX),
    ] {
        t.note(base.gpu.execbuffer(&send(n, id, ty, opaque), &[], 0));
    }
    for (id, hang_up, size) in [(0u32, 0u32, 16u32), (0x8000_0000, 1, 0), (99, 0, u32::MAX)] {
        let body = [id, hang_up, size, 0, 0, 0, 0, 0];
        t.note(
            base.gpu
                .execbuffer(&command(CMD_WRITE, 0, 48, &body), &[], 0),
        );
        t.note(
            base.gpu
                .execbuffer(&command(CMD_READ, 0, 48, &body), &[], 0),
        );
    }
    t.report();

    // Blobs: ids the host never gave, sizes from nothing to absurd, ids given for another
    // size, and images far larger than the blob window.
    let mut t = Tally::new("bogus-and-oversized-blobs");
    for id in [0u64, 1, 2, 3, 1000, 0xffff_ffff, u64::MAX] {
        for size in [RING, 1 << 20, 1 << 40] {
            if let Some(b) = t.note(base.gpu.create_blob(
                BLOB_MEM_HOST3D,
                BLOB_FLAG_USE_MAPPABLE | BLOB_FLAG_USE_SHAREABLE,
                size,
                id,
            )) {
                if let Some(m) = t.note(base.gpu.map(b.bo_handle, size as usize)) {
                    drop(m);
                }
                t.note(base.gpu.close(b.bo_handle));
            }
        }
    }
    for (w, h) in [(65535u32, 65535u32), (u32::MAX, 1), (1, u32::MAX), (0, 0)] {
        let body = [w, h, u32::from_le_bytes(*b"R8  "), 0];
        t.note(
            base.gpu
                .execbuffer(&command(CMD_GET_IMAGE_REQUIREMENTS, 0, 24, &body), &[], 0),
        );
    }
    t.note(
        base.gpu
            .create_blob(BLOB_MEM_GUEST, BLOB_FLAG_USE_MAPPABLE, 0, 0),
    );
    t.note(
        base.gpu
            .create_blob(BLOB_MEM_GUEST, BLOB_FLAG_USE_MAPPABLE, 1 << 40, 0),
    );
    t.note(base.gpu.create_blob(7, 0, RING, 0));
    for handle in [0u32, 999, u32::MAX] {
        t.note(base.gpu.map(handle, 4096));
        t.note(base.gpu.wait(handle));
        t.note(base.gpu.resource_info(handle));
        t.note(base.gpu.close(handle));
    }
    t.report();

    // Many blobs: ring-sized guest blobs until the kernel or the host says no (bounded).
    let mut t = Tally::new("many-blobs");
    let mut held = Vec::new();
    for _ in 0..2000 {
        match t.note(
            base.gpu
                .create_blob(BLOB_MEM_GUEST, BLOB_FLAG_USE_MAPPABLE, RING, 0),
        ) {
            Some(b) => held.push(b),
            None => break,
        }
    }
    for b in held {
        let _ = base.gpu.close(b.bo_handle);
    }
    t.report();

    // Many contexts, each INIT (a Wayland connection on the VM's socket), all at once.
    let mut t = Tally::new("many-contexts");
    let mut contexts = Vec::new();
    for _ in 0..200 {
        match t.note(context(&node, 2)) {
            Some(c) => {
                t.note(c.init());
                contexts.push(c);
            }
            None => break,
        }
    }
    drop(contexts);
    t.report();

    // Seeded random commands on an initialised context.
    let mut t = Tally::new("random-commands");
    let mut rng = Rng(seed | 1);
    if let Ok(c) = context(&node, 2) {
        let _ = c.init();
        for _ in 0..2000 {
            let len = (rng.next() % 600) as usize;
            let mut cmd: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len >= 4 {
                // Mostly known commands with a plausible size, so the host parses deeper.
                cmd[0] = (rng.next() % 9) as u8;
                cmd[1] = (rng.next() % 3) as u8;
                let size = if rng.next().is_multiple_of(4) {
                    rng.next() as u16
                } else {
                    len as u16
                };
                cmd[2..4].copy_from_slice(&size.to_le_bytes());
            }
            let ring = (rng.next() % 3) as u32;
            t.note(c.gpu.execbuffer(&cmd, &[], ring));
        }
    }
    t.report();
    println!("done");
}
