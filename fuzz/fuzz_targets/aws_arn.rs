//! AWS KMS identifier parser: never panics; an accepted identifier round-trips, and its
//! endpoint host is always `kms[-fips].<lower-case region>.amazonaws.com[.cn]`.
#![no_main]
use byok_core::kms::aws::{Fips, KeyArn};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let Ok(arn) = KeyArn::parse(text) else { return };
    assert_eq!(KeyArn::parse(&arn.to_key_id()).unwrap(), arn);
    for fips in [Fips::Off, Fips::On] {
        if let Ok(e) = arn.endpoint(fips) {
            let host = e.host.as_str();
            let rest = host
                .strip_prefix("kms-fips.")
                .or_else(|| host.strip_prefix("kms."))
                .unwrap();
            let region = rest
                .strip_suffix(".amazonaws.com.cn")
                .or_else(|| rest.strip_suffix(".amazonaws.com"))
                .unwrap();
            assert!(
                region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{host}"
            );
            assert_eq!(region, arn.region());
        }
    }
});
