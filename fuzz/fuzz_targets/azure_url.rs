//! Azure key URL parser: never panics; an accepted URL round-trips, and the URL byok would call
//! is rebuilt from checked parts only: `https://`, a known suffix, `/keys/NAME[/VERSION]`, no
//! port, user, query, fragment, `%` or `..`.
#![no_main]
use byok_core::kms::azure::KeyUrl;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = KeyUrl::parse(text) else { return };
    let id = url.key_id();
    assert_eq!(KeyUrl::parse(&id).unwrap(), url);
    assert!(id.starts_with("https://"), "{id}");
    let host = id["https://".len()..].split('/').next().unwrap();
    assert!(host.ends_with(&format!(".{}", url.suffix())), "{id}");
    assert!(!host.contains(':') && !host.contains('@'), "{id}");
    assert!(
        id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-./:".contains(&b)),
        "{id}"
    );
    assert!(!id.contains(".."), "{id}");
    assert!(url.base_url().starts_with("https://") && url.base_url().ends_with(url.suffix()));
});
