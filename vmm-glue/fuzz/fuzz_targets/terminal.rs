//! Arbitrary guest output through the terminal filter. Checks invariants, not just that it
//! does not panic: no OSC/DCS/APC/PM/SOS, no request the terminal answers, no C1 control, valid
//! UTF-8, and the same output whole, byte by byte and in two chunks
//! (`bulkhead_vmm::terminal::fuzzing::check`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_vmm::terminal::fuzzing::check(data);
});
