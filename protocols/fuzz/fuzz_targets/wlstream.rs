//! Arbitrary bytes as the Wayland-over-vsock stream the bridge reads from a guest proxy:
//! bounded records, canonical re-encoding, the same records however the reads are cut
//! (`bulkhead_ipc::fuzzing::check_wlstream`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_ipc::fuzzing::check_wlstream(data);
});
