//! AWS KMS key identifiers as an admin pastes them, and the endpoint each one implies.
//!
//! Accepted: a key ARN `arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID` (a UUID, or `mrk-` and 32
//! hex digits for a multi-region key) and an alias ARN `arn:PARTITION:kms:REGION:ACCOUNT:alias/NAME`,
//! for the partitions `aws`, `aws-cn` and `aws-us-gov`. Refused: bare key ids and `alias/NAME`
//! (byok calls the customer's account from the vendor's, and only an ARN says which region and
//! account), AWS-managed aliases (`alias/aws/...`, not usable cross-account), and anything not
//! plain ASCII in the exact shape.
//!
//! The endpoint host is built only from the validated partition and region, never from text the
//! admin typed: `kms.<region>.amazonaws.com` (`.com.cn` in China, `kms-fips.` when FIPS is
//! configured). Nothing in an identifier can point byok at another host; a test endpoint
//! exists only in server configuration.

use alloc::format;
use alloc::string::String;
use core::fmt;

/// Longest identifier accepted (the KMS `KeyId` limit).
pub const MAX_LEN: usize = 2048;

/// An AWS partition byok can call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Partition {
    /// `aws`: the commercial regions.
    Aws,
    /// `aws-cn`: Beijing and Ningxia.
    AwsCn,
    /// `aws-us-gov`: GovCloud (US).
    AwsUsGov,
}

impl Partition {
    /// The partition's name in ARNs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::AwsCn => "aws-cn",
            Self::AwsUsGov => "aws-us-gov",
        }
    }

    const fn dns_suffix(self) -> &'static str {
        match self {
            Self::Aws | Self::AwsUsGov => "amazonaws.com",
            Self::AwsCn => "amazonaws.com.cn",
        }
    }
}

/// What the ARN names: a key or an alias.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyRef {
    /// `key/<id>`: a UUID or a multi-region `mrk-` id.
    Key(String),
    /// `alias/<name>`.
    Alias(String),
}

/// A validated AWS KMS key or alias ARN. Its parts are read through methods: only
/// [`KeyArn::parse`] makes one, so the region in the endpoint's host name is always one the
/// parser checked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyArn {
    partition: Partition,
    region: String,
    account: String,
    key: KeyRef,
}

/// Whether to call the FIPS endpoints (server configuration, never part of an identifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fips {
    /// `kms.<region>...`
    #[default]
    Off,
    /// `kms-fips.<region>...` (not offered in China).
    On,
}

/// Where to send a KMS request for a key, and how to sign it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host (and port, for a test override), as sent in the `Host` header and signed.
    pub host: String,
    /// The region to sign for.
    pub signing_region: String,
    url: String,
}

impl Endpoint {
    /// The URL requests go to: `https://<host>/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// **Tests only**: send requests for keys in `signing_region` to `base_url` (for example a
    /// local KMS emulator at `http://127.0.0.1:5000`). Only server configuration may call this;
    /// nothing an admin pastes reaches it. Refuses anything but `http(s)://host[:port]`.
    pub fn danger_override(base_url: &str, signing_region: &str) -> Result<Self, IdentifierError> {
        let host = base_url
            .strip_prefix("http://")
            .or_else(|| base_url.strip_prefix("https://"))
            .map(|h| h.trim_end_matches('/'))
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
            })
            .ok_or_else(|| {
                err(
                    "endpoint override",
                    base_url,
                    "http(s)://host[:port] with nothing after it",
                )
            })?;
        let scheme = if base_url.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        Ok(Self {
            host: host.into(),
            signing_region: signing_region.into(),
            url: format!("{scheme}://{host}/"),
        })
    }
}

/// Why an identifier was refused. Names the part, shows what arrived (escaped, shortened), and
/// says what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifierError {
    /// The part of the identifier at fault.
    pub part: &'static str,
    /// What was found there, escaped and at most 64 characters.
    pub found: String,
    /// What is expected, and what to do.
    pub expected: &'static str,
}

impl fmt::Display for IdentifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "AWS KMS key identifier, {}: found \"{}\"; expected {}",
            self.part, self.found, self.expected
        )
    }
}

impl core::error::Error for IdentifierError {}

/// Escapes control and non-ASCII characters and shortens, so an error message can never carry
/// a terminal escape, a newline into a log line, or a megabyte of input.
fn shown(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i >= 64 {
            out.push_str("...");
            break;
        }
        for e in c.escape_debug() {
            out.push(e);
        }
        if !c.is_ascii() {
            // escape_debug keeps printable non-ASCII as is; make look-alikes visible.
            out.pop();
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    out
}

fn err(part: &'static str, found: &str, expected: &'static str) -> IdentifierError {
    IdentifierError {
        part,
        found: shown(found),
        expected,
    }
}

impl KeyArn {
    /// The partition.
    pub fn partition(&self) -> Partition {
        self.partition
    }

    /// The region, e.g. `eu-west-1`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The 12-digit account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The key or alias.
    pub fn key(&self) -> &KeyRef {
        &self.key
    }

    /// Parses a pasted identifier. Leading and trailing whitespace is trimmed (a paste often
    /// carries a newline); nothing else is forgiven.
    pub fn parse(input: &str) -> Result<Self, IdentifierError> {
        let s = input.trim();
        if s.len() > MAX_LEN {
            return Err(err(
                "length",
                &format!("{} bytes", s.len()),
                "at most 2048 bytes",
            ));
        }
        if let Some(bad) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(err(
                "character",
                &format!("{bad}"),
                "printable ASCII only (no spaces, control or look-alike Unicode characters)",
            ));
        }
        if !s.starts_with("arn:") {
            return Err(if is_key_id(s) || s.starts_with("alias/") {
                err(
                    "format",
                    s,
                    "a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) or alias ARN \
                     (arn:aws:kms:REGION:ACCOUNT:alias/NAME): byok calls your key from its own \
                     account, and only an ARN says which region and account the key is in",
                )
            } else {
                err("format", s, "an ARN starting with \"arn:\"")
            });
        }
        let mut parts = s.splitn(6, ':');
        let (
            Some(_arn),
            Some(partition),
            Some(service),
            Some(region),
            Some(account),
            Some(resource),
        ) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        )
        else {
            return Err(err(
                "format",
                s,
                "6 fields: arn:PARTITION:kms:REGION:ACCOUNT:key/ID",
            ));
        };
        let partition = match partition {
            "aws" => Partition::Aws,
            "aws-cn" => Partition::AwsCn,
            "aws-us-gov" => Partition::AwsUsGov,
            other => return Err(err("partition", other, "aws, aws-cn or aws-us-gov")),
        };
        if service != "kms" {
            return Err(err("service", service, "kms (this is not a KMS key ARN)"));
        }
        check_region(partition, region)?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("account", account, "a 12-digit AWS account id"));
        }
        let key = if let Some(id) = resource.strip_prefix("key/") {
            if !is_key_id(id) {
                return Err(err(
                    "key id",
                    id,
                    "a lower-case UUID (1234abcd-12ab-34cd-56ef-1234567890ab) or mrk- and 32 hex digits",
                ));
            }
            KeyRef::Key(id.into())
        } else if let Some(name) = resource.strip_prefix("alias/") {
            check_alias(name)?;
            KeyRef::Alias(name.into())
        } else {
            return Err(err("resource", resource, "key/ID or alias/NAME"));
        };
        Ok(Self {
            partition,
            region: region.into(),
            account: account.into(),
            key,
        })
    }

    /// The endpoint for this key. The host is made from the validated partition and region only.
    pub fn endpoint(&self, fips: Fips) -> Result<Endpoint, IdentifierError> {
        let service = match (fips, self.partition) {
            (Fips::Off, _) => "kms",
            (Fips::On, Partition::AwsCn) => {
                return Err(err(
                    "region",
                    &self.region,
                    "a region with a FIPS endpoint (China has none)",
                ));
            }
            (Fips::On, _) => "kms-fips",
        };
        let host = format!("{service}.{}.{}", self.region, self.partition.dns_suffix());
        Ok(Endpoint {
            url: format!("https://{host}/"),
            host,
            signing_region: self.region.clone(),
        })
    }

    /// The regional STS endpoint in this key's partition and region, where byok assumes the
    /// customer's role. Like [`Self::endpoint`], made from validated fields only.
    pub fn sts_endpoint(&self) -> Endpoint {
        let host = format!("sts.{}.{}", self.region, self.partition.dns_suffix());
        Endpoint {
            url: format!("https://{host}/"),
            host,
            signing_region: self.region.clone(),
        }
    }

    /// The identifier in canonical form, as KMS requests carry it in `KeyId`.
    pub fn to_key_id(&self) -> String {
        let resource = match &self.key {
            KeyRef::Key(id) => format!("key/{id}"),
            KeyRef::Alias(name) => format!("alias/{name}"),
        };
        format!(
            "arn:{}:kms:{}:{}:{resource}",
            self.partition.name(),
            self.region,
            self.account
        )
    }
}

impl fmt::Display for KeyArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_key_id())
    }
}

/// `[a-z]{2}-[a-z]+-[0-9]{1,2}`, or `us-gov-[a-z]+-[0-9]{1,2}`, matching the partition.
fn check_region(partition: Partition, region: &str) -> Result<(), IdentifierError> {
    const EXPECTED: &str =
        "an AWS region such as us-east-1 (cn-north-1 in aws-cn, us-gov-west-1 in aws-us-gov)";
    let rest = match partition {
        Partition::Aws => region,
        Partition::AwsCn => region.strip_prefix("cn-").map_or("", |r| r),
        Partition::AwsUsGov => region.strip_prefix("us-gov-").map_or("", |r| r),
    };
    let fields: alloc::vec::Vec<&str> = rest.split('-').collect();
    let ok = match (partition, fields.as_slice()) {
        (Partition::Aws, [area, dir, num]) => {
            area.len() == 2
                && *area != "cn"
                && is_lower(area)
                && is_dir(dir)
                && is_num(num)
                && !region.starts_with("us-gov-")
        }
        (Partition::AwsCn | Partition::AwsUsGov, [dir, num]) => is_dir(dir) && is_num(num),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(err("region", region, EXPECTED))
    }
}

fn is_lower(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase())
}

fn is_dir(s: &str) -> bool {
    (2..=16).contains(&s.len()) && is_lower(s)
}

fn is_num(s: &str) -> bool {
    (1..=2).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A lower-case UUID, or `mrk-` and 32 lower-case hex digits.
fn is_key_id(s: &str) -> bool {
    if let Some(h) = s.strip_prefix("mrk-") {
        return h.len() == 32 && is_hex(h);
    }
    let groups: alloc::vec::Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && is_hex(g))
}

fn check_alias(name: &str) -> Result<(), IdentifierError> {
    if name.starts_with("aws/") {
        return Err(err(
            "alias",
            name,
            "a customer-managed key's alias: AWS-managed keys (alias/aws/...) cannot be shared with another account",
        ));
    }
    let ok = (1..=250).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-'))
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.contains("//");
    if ok {
        Ok(())
    } else {
        Err(err(
            "alias",
            name,
            "1 to 250 characters of A-Z a-z 0-9 / _ - (no empty path segments)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn key_alias_and_multi_region_arns() {
        let a = KeyArn::parse(KEY).unwrap();
        assert_eq!(a.partition, Partition::Aws);
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(a.account, "111122223333");
        assert_eq!(a.to_key_id(), KEY);
        assert_eq!(
            a.endpoint(Fips::Off).unwrap().host,
            "kms.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            a.endpoint(Fips::On).unwrap().host,
            "kms-fips.eu-west-1.amazonaws.com"
        );
        let m = KeyArn::parse(
            "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab",
        )
        .unwrap();
        assert!(matches!(m.key, KeyRef::Key(ref id) if id.starts_with("mrk-")));
        let al = KeyArn::parse(" arn:aws:kms:ap-southeast-2:111122223333:alias/team/byok-root\n")
            .unwrap();
        assert_eq!(al.key, KeyRef::Alias("team/byok-root".into()));
        let cn = KeyArn::parse("arn:aws-cn:kms:cn-north-1:111122223333:alias/k").unwrap();
        assert_eq!(
            cn.endpoint(Fips::Off).unwrap().host,
            "kms.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(cn.endpoint(Fips::On).unwrap_err().part, "region");
        let gov = KeyArn::parse("arn:aws-us-gov:kms:us-gov-west-1:111122223333:alias/k").unwrap();
        assert_eq!(
            gov.endpoint(Fips::On).unwrap().host,
            "kms-fips.us-gov-west-1.amazonaws.com"
        );
        assert_eq!(
            gov.endpoint(Fips::On).unwrap().url(),
            "https://kms-fips.us-gov-west-1.amazonaws.com/"
        );
    }

    #[test]
    fn bare_ids_and_aliases_need_an_arn() {
        for bare in [
            "1234abcd-12ab-34cd-56ef-1234567890ab",
            "alias/my-key",
            "mrk-1234abcd12ab34cd56ef1234567890ab",
        ] {
            let e = KeyArn::parse(bare).unwrap_err();
            assert_eq!(e.part, "format");
            assert!(e.to_string().contains("region and account"), "{e}");
        }
    }

    #[test]
    fn errors_name_the_part() {
        let cases = [
            (
                "arn:aws:s3:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "service",
            ),
            (
                "arn:aws:kms:eu-west-1:11112222333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
                "account",
            ),
            (
                "arn:aws:kms:eu-west-1:111122223333:key/1234ABCD-12ab-34cd-56ef-1234567890ab",
                "key id",
            ),
            ("arn:aws:kms:eu-west-1:111122223333:alias/aws/ebs", "alias"),
            ("arn:aws:kms:cn-north-1:111122223333:alias/k", "region"),
            ("arn:aws-cn:kms:us-east-1:111122223333:alias/k", "region"),
            ("arn:aws:kms:us-gov-west-1:111122223333:alias/k", "region"),
            (
                "arn:aws-iso:kms:us-iso-east-1:111122223333:alias/k",
                "partition",
            ),
            ("arn:aws:kms:eu-west-1:111122223333:grant/x", "resource"),
            ("arn:aws:kms:eu-west-1", "format"),
        ];
        for (input, part) in cases {
            assert_eq!(KeyArn::parse(input).unwrap_err().part, part, "{input}");
        }
    }
}
