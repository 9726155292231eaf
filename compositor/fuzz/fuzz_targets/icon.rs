//! Arbitrary bytes as an app icon (`bulkhead_compositor::icons`: PNG or SVG from a VM image):
//! decoding must never panic, hang or allocate beyond its bounds, and a decoded icon always
//! has the launcher's size.
#![no_main]

use bulkhead_compositor::icons::{decode, SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(icon) = decode(data) {
        assert_eq!(icon.bgra.len(), (SIZE * SIZE * 4) as usize);
    }
});
