//! Arbitrary bytes as a guest's TX and RX virtqueues (descriptor tables, available rings,
//! frame data), run through a port's TX path and its peers' RX paths.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_switch::fuzzing::descriptors(data);
});
