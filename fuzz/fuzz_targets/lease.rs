//! Lease document parser (what an edge reads from the network): never panics, refuses what is
//! over the size limit, and an accepted lease ends no later than its document says or than
//! `ttl_ms` after arrival (on the host's lease clock, however far ahead of the wall clock that
//! runs); sent on and read back at the same time, it is the same lease.
#![no_main]
use byok_core::lease::{Lease, MAX_DOCUMENT_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose the arrival time, the next 8 how far the lease clock is ahead of
    // the wall clock; the rest is the answer's body.
    let Some((when, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some((ahead, json)) = rest.split_first_chunk::<8>() else {
        return;
    };
    let received = i64::from_le_bytes(*when);
    let ahead = i64::from_le_bytes(*ahead);
    let Ok(lease) = Lease::parse(json, received, ahead) else {
        return;
    };
    assert!(json.len() <= MAX_DOCUMENT_LEN);
    let ttl = i64::try_from(lease.ttl_ms()).unwrap_or(i64::MAX);
    assert!(lease.expires_at() <= received.saturating_add(ttl));
    assert!(lease.versions().any(|v| v == lease.current_version()));
    // Sent on as read (its end already on this clock): read back with no offset, the same.
    let again = Lease::parse(&lease.to_json(), received, 0).unwrap();
    assert_eq!(again.expires_at(), lease.expires_at());
    assert_eq!(
        again.versions().collect::<Vec<_>>(),
        lease.versions().collect::<Vec<_>>()
    );
    assert_eq!(again.to_json(), lease.to_json());
});
