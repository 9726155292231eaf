//! Arbitrary bytes and fds from a VM client, dispatched by the real compositor
//! (`bulkhead_compositor::fuzzing`): it must never panic or hang, and a host client must
//! still get a frame after each input.
#![no_main]

use std::cell::RefCell;

use bulkhead_compositor::fuzzing::Harness;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static HARNESS: RefCell<Option<Harness>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    HARNESS.with(|h| {
        let mut h = h.borrow_mut();
        let harness = h.get_or_insert_with(|| match Harness::new() {
            Ok(h) => h,
            Err(e) => panic!("the harness cannot start: {e}"),
        });
        if let Err(e) = harness.run(data) {
            panic!("{e}");
        }
    });
});
