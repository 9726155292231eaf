//! Arbitrary bytes as agent frames, read as the host reads the guest's and as the agent reads
//! the host's: bounded frames, messages that survive a round trip, the same frames however
//! the reads are cut (`bulkhead_ipc::fuzzing::check_agent`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    bulkhead_ipc::fuzzing::check_agent(data);
});
