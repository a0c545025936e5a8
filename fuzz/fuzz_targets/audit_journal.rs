//! Untrusted audit journal bytes (a file recovery reads after a crash, possibly
//! tampered with): finding the blocks and decoding their rows must never panic, and
//! every row returned is above the asked sequence number, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zerofn_store::AuditJournal;

fuzz_target!(|data: &[u8]| {
    let after = data.first().map_or(0, |b| i64::from(*b));
    let rows = AuditJournal::rows_in(data, after);
    assert!(rows.windows(2).all(|w| w[0].seq <= w[1].seq));
    assert!(rows.iter().all(|r| r.seq > after));
});
