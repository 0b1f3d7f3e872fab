//! Cloud KMS key name parser: never panics; an accepted name round-trips, and the request path
//! made from it holds only the checked parts (no `?`, `#`, `%`, `..` or extra segment) under
//! `/v1/projects/`, for the fixed host.
#![no_main]
use byok_core::kms::gcp::KeyName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(name) = KeyName::parse(text) else { return };
    assert_eq!(KeyName::parse(&name.to_name()).unwrap(), name);
    let path = name.path("encrypt");
    assert!(path.starts_with("/v1/projects/"), "{path}");
    assert_eq!(path.matches('/').count(), 9, "{path}");
    assert!(
        path.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_.:".contains(&b)),
        "{path}"
    );
    assert!(!path.contains(".."), "{path}");
});
