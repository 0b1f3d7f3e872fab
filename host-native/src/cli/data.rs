//! `byok encrypt` and `byok decrypt`: through the API in the `byok:v1:` text format, or locally
//! in the streaming format (`--stream`, [`super::stream`]).

use std::collections::BTreeMap;
use std::io::Read;

use base64ct::{Base64, Encoding};
use serde_json::json;
use zeroize::Zeroizing;

use super::output::s;
use super::sink::Sink;
use super::{Client, Failure, Io, stream};

/// The `--context KEY=VALUE` flags as a map; a key given twice is a usage error, as the
/// server refuses it (the last flag winning would bind a context the caller did not mean).
pub(super) fn parse_context(pairs: &[String]) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Failure::usage(format!("--context {p:?}: expected KEY=VALUE")))?;
        if out.insert(k.to_owned(), v.to_owned()).is_some() {
            return Err(Failure::usage(format!(
                "--context: key {k:?} is given twice; give each key once"
            )));
        }
    }
    Ok(out)
}

/// Reads the whole input, refusing (not truncating) more than `max` bytes.
fn read_input(io: &Io, max: usize) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut buf = Zeroizing::new(Vec::new());
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let result = match io.input.as_deref() {
        None => std::io::stdin().lock().take(limit).read_to_end(&mut buf),
        Some(p) if p.as_os_str() == "-" => {
            std::io::stdin().lock().take(limit).read_to_end(&mut buf)
        }
        Some(p) => std::fs::File::open(p).and_then(|f| f.take(limit).read_to_end(&mut buf)),
    };
    result.map_err(|e| Failure::usage(format!("cannot read input: {e}")))?;
    if buf.len() > max {
        return Err(Failure::usage(format!(
            "input is larger than {max} bytes, the most one API call takes"
        )));
    }
    Ok(buf)
}

/// Writes `bytes` to the output: a file only appears whole ([`Sink`]). The bytes are complete
/// and checked already, so standard output is never held back.
fn write_output(io: &Io, bytes: &[u8]) -> Result<(), Failure> {
    let mut out = Sink::open(io, false)?;
    out.write(bytes)?;
    out.commit()
}

/// `byok encrypt`: the input's bytes to a `byok:v1:` ciphertext (one line).
pub async fn encrypt(client: &Client, org: &str, scope: &str, io: &Io) -> Result<(), Failure> {
    if io.stream {
        return stream::encrypt(client, org, scope, io).await;
    }
    let input = read_input(io, crate::service::MAX_PLAINTEXT)?;
    let v = client
        .post(
            &format!("/v1/orgs/{org}/scopes/{scope}/encrypt"),
            json!({ "plaintext": Base64::encode_string(&input), "context": parse_context(&io.context)? }),
        )
        .await?;
    let mut out = s(&v, "ciphertext").to_owned();
    out.push('\n');
    write_output(io, out.as_bytes())
}

/// `byok decrypt`: a `byok:v1:` ciphertext to the original bytes; a streamed one with
/// standard output held until it all authenticated if `buffer`.
pub async fn decrypt(client: &Client, org: &str, io: &Io, buffer: bool) -> Result<(), Failure> {
    let (head, reader) = stream::sniff(io)?;
    if head.starts_with(&byok_core::format::header::MAGIC) {
        return stream::decrypt(client, org, io, buffer, head, reader).await;
    }
    // The text armor of the largest ciphertext: 4/3 of it, plus the header and the prefix.
    let max = crate::service::MAX_PLAINTEXT / 3 * 4 + 4096;
    let mut input = Zeroizing::new(head);
    reader
        .take(u64::try_from(max).unwrap_or(u64::MAX))
        .read_to_end(&mut input)
        .map_err(|e| Failure::usage(format!("cannot read input: {e}")))?;
    if input.len() > max {
        return Err(Failure::usage(
            "input is larger than the text format allows; use --stream",
        ));
    }
    let text = std::str::from_utf8(&input)
        .map_err(|_| Failure::usage("the input is not `byok:v1:` text"))?
        .trim();
    let v = client
        .post(
            &format!("/v1/orgs/{org}/decrypt"),
            json!({ "ciphertext": text, "context": parse_context(&io.context)? }),
        )
        .await?;
    let pt = Zeroizing::new(
        Base64::decode_vec(s(&v, "plaintext"))
            .map_err(|_| Failure::usage("the server's answer is not base64"))?,
    );
    write_output(io, &pt)
}

#[cfg(test)]
mod tests {
    use super::parse_context;

    /// `--context KEY=VALUE` flags: a key given twice is a usage error (exit 2), as the server
    /// refuses it, not the last flag's value.
    #[test]
    fn a_context_key_given_twice_is_a_usage_error() {
        let flags = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = parse_context(&flags(&["tenant=acme", "table=a=b"])).unwrap();
        assert_eq!(ok["table"], "a=b");
        let e = parse_context(&flags(&["tenant=acme", "tenant=evil"])).unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (
                2,
                r#"--context: key "tenant" is given twice; give each key once"#
            )
        );
    }
}
