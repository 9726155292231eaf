//! Arbitrary bytes as the Wayland messages the guest proxy reads from apps and from the host:
//! framing that agrees however the stream is cut, arguments bounded by and encoding back to
//! their message, and the vsock proxy's handling of both directions on one connection
//! (`bulkhead_guest::fuzzing::check_wire`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_guest::fuzzing::check_wire(data);
});
