//! Hostile AWS KMS identifiers: every one is refused with a typed error, and no accepted
//! identifier can make byok call a host other than `kms[-fips].<region>.amazonaws.com[.cn]`.

use byok_core::kms::aws::{Fips, KeyArn};

const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

fn hostile() -> Vec<(String, &'static str)> {
    let ok = format!("arn:aws:kms:us-east-1:111122223333:key/{ID}");
    vec![
        // Other hosts, in every field that reaches the endpoint or the request.
        (
            format!("arn:aws:kms:us-east-1.evil.example:111122223333:key/{ID}"),
            "region",
        ),
        (
            format!("arn:aws:kms:evil.example/us-east-1:111122223333:key/{ID}"),
            "region",
        ),
        (
            format!("arn:aws:kms:us-east-1:111122223333:key/{ID}.evil.example"),
            "key id",
        ),
        (
            format!("arn:aws:kms:us-east-1#@evil.example:111122223333:key/{ID}"),
            "region",
        ),
        ("https://kms.us-east-1.amazonaws.com/key/x".into(), "format"),
        (
            "https://evil.example/arn:aws:kms:us-east-1:111122223333:alias/x".into(),
            "format",
        ),
        // Userinfo and URL syntax.
        (
            format!("arn:aws:kms:user:pass@us-east-1:111122223333:key/{ID}"),
            "region",
        ),
        (
            format!("arn:aws:kms:us-east-1:111122223333@evil.example:key/{ID}"),
            "account",
        ),
        // IP literals and metadata addresses.
        (
            format!("arn:aws:kms:169.254.169.254:111122223333:key/{ID}"),
            "region",
        ),
        (
            format!("arn:aws:kms:[fd00:ec2::254]:111122223333:key/{ID}"),
            "region",
        ),
        (
            format!("arn:aws:kms:127.0.0.1:111122223333:key/{ID}"),
            "region",
        ),
        (
            "arn:aws:kms:us-east-1:111122223333:alias/../../latest/meta-data".into(),
            "alias",
        ),
        (
            "arn:aws:kms:localhost:111122223333:alias/x".into(),
            "region",
        ),
        // Unicode look-alikes: Cyrillic a, U+2010 hyphen, full-width digits, zero-width space.
        (
            format!("\u{0430}rn:aws:kms:us-east-1:111122223333:key/{ID}"),
            "character",
        ),
        (
            format!("arn:aws:kms:us\u{2010}east\u{2010}1:111122223333:key/{ID}"),
            "character",
        ),
        (
            format!("arn:aws:kms:us-east-1:\u{ff11}11122223333:key/{ID}"),
            "character",
        ),
        (
            format!("arn:aws:kms:us-east-1:111122223333:key/{ID}\u{200b}"),
            "character",
        ),
        // Control characters, header and log injection.
        (
            format!("arn:aws:kms:us-east-1:111122223333:key/{ID}\r\nHost: evil.example"),
            "character",
        ),
        (
            format!("arn:aws:kms:us-east-1\0:111122223333:key/{ID}"),
            "character",
        ),
        (
            format!("arn:aws:kms:us-east-1:111122223333:key/{ID}\x1b[31m"),
            "character",
        ),
        (
            format!("arn:aws:kms:us-east-1:111122223333: key/{ID}"),
            "character",
        ),
        // Percent-encoding and case games.
        (
            format!("arn:aws:kms:us%2deast-1:111122223333:key/{ID}"),
            "region",
        ),
        (
            format!("ARN:aws:kms:us-east-1:111122223333:key/{ID}"),
            "format",
        ),
        (
            format!("arn:AWS:kms:us-east-1:111122223333:key/{ID}"),
            "partition",
        ),
        (
            format!("arn:aws:kms:US-EAST-1:111122223333:key/{ID}"),
            "region",
        ),
        // Overlong fields.
        (
            format!("arn:aws:kms:us-{}-1:111122223333:key/{ID}", "a".repeat(100)),
            "region",
        ),
        (
            format!("arn:aws:kms:us-east-123:111122223333:key/{ID}"),
            "region",
        ),
        (
            format!("arn:aws:kms:us-east-1:1111222233334:key/{ID}"),
            "account",
        ),
        (
            format!(
                "arn:aws:kms:us-east-1:111122223333:alias/{}",
                "a".repeat(251)
            ),
            "alias",
        ),
        (format!("{ok}{}", "a".repeat(3000)), "length"),
        (
            format!("arn:aws:kms:us-east-1:111122223333:key/{ID}0"),
            "key id",
        ),
        // Empty and structural.
        ("".into(), "format"),
        ("arn:".into(), "format"),
        ("arn:aws:kms:::key/".into(), "region"),
        (
            format!("arn:aws:kms:us-east-1:111122223333:key/{ID}:extra"),
            "key id",
        ),
        ("arn:aws:kms:us-east-1:111122223333:alias/".into(), "alias"),
        (
            "arn:aws:kms:us-east-1:111122223333:alias//x".into(),
            "alias",
        ),
    ]
}

#[test]
fn every_hostile_identifier_is_refused_naming_the_part() {
    for (input, part) in hostile() {
        let err = KeyArn::parse(&input).expect_err(&input);
        assert_eq!(err.part, part, "{input:?}: {err}");
        let msg = err.to_string();
        // The message never carries raw control characters or huge input.
        assert!(!msg.chars().any(|c| c.is_control()), "{msg:?}");
        assert!(msg.len() < 600, "{} bytes", msg.len());
    }
}

#[test]
fn accepted_identifiers_only_ever_name_amazon_kms_hosts() {
    let regions = [
        "us-east-1",
        "eu-west-1",
        "ap-southeast-2",
        "me-central-1",
        "il-central-1",
        "mx-central-1",
    ];
    for r in regions {
        let arn = KeyArn::parse(&format!("arn:aws:kms:{r}:111122223333:key/{ID}")).unwrap();
        for fips in [Fips::Off, Fips::On] {
            let e = arn.endpoint(fips).unwrap();
            assert!(e.host.starts_with("kms"), "{}", e.host);
            assert!(e.host.ends_with(".amazonaws.com"), "{}", e.host);
            assert_eq!(e.host.matches('.').count(), 3, "{}", e.host);
            assert_eq!(e.signing_region, r);
        }
    }
}
