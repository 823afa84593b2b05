//! The audit chain's entry check: any bytes as a line give a record or a reason, never a panic;
//! and a line that passes really is the entry asked for (its seq and prev, and a hash that
//! matches its own bytes).
#![no_main]
use auth::audit::{GENESIS_HASH, check_entry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = check_entry(GENESIS_HASH, 1, data) {
        assert_eq!(r.seq, 1);
        assert_eq!(r.prev, GENESIS_HASH);
        // The same bytes do not also pass as another position in the chain.
        assert!(check_entry(GENESIS_HASH, 2, data).is_err());
        assert!(check_entry(&r.hash, 1, data).is_err());
    }
});
