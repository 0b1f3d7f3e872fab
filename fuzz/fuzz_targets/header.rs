//! Header parser: never panics; whatever parses re-encodes to the same 92 bytes.
#![no_main]
use byok_core::Header;
use byok_core::format::header::HEADER_LEN;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, rest)) = Header::parse(data) {
        assert_eq!(&header.encode()[..], &data[..HEADER_LEN]);
        assert_eq!(rest.len(), data.len() - HEADER_LEN);
    }
});
