//! Arbitrary bytes as frames from every port (policy) and through a shared-memory ring.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_switch::fuzzing::frames(data);
});
