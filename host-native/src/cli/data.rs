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
        None => read_wiped(std::io::stdin().lock().take(limit), &mut buf),
        Some(p) if p.as_os_str() == "-" => {
            read_wiped(std::io::stdin().lock().take(limit), &mut buf)
        }
        Some(p) => std::fs::File::open(p).and_then(|f| read_wiped(f.take(limit), &mut buf)),
    };
    result.map_err(|e| Failure::usage(format!("cannot read input: {e}")))?;
    if buf.len() > max {
        return Err(Failure::usage(format!(
            "input is larger than {max} bytes, the most one API call takes"
        )));
    }
    Ok(buf)
}

/// Reads `from` to its end onto `buf`, which holds plaintext: a buffer outgrown is wiped
/// (`read_to_end` grows it as a `Vec` does, leaving each smaller copy in freed memory).
fn read_wiped(mut from: impl Read, buf: &mut Zeroizing<Vec<u8>>) -> std::io::Result<()> {
    let mut chunk = Zeroizing::new([0u8; 1 << 16]);
    loop {
        match from.read(&mut chunk[..]) {
            Ok(0) => return Ok(()),
            Ok(n) => byok_core::secret::extend_wiped(buf, &chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The body of an encrypt request, `{"plaintext":"<base64>","context":{..}}`, built in one
/// buffer sized up front and wiped when dropped (a `serde_json::Value` would hold the base64
/// plaintext in strings freed unwiped, and its text in a buffer grown by doubling).
fn encrypt_body(
    input: &[u8],
    context: &BTreeMap<String, String>,
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let context =
        serde_json::to_vec(context).map_err(|e| Failure::usage(format!("--context: {e}")))?;
    let b64 = Base64::encoded_len(input);
    let (head, mid) = (br#"{"plaintext":""#, br#"","context":"#);
    let mut body = Zeroizing::new(Vec::with_capacity(
        head.len() + b64 + mid.len() + context.len() + 1,
    ));
    body.extend_from_slice(head);
    let at = body.len();
    body.resize(at + b64, 0);
    Base64::encode(input, &mut body[at..])
        .map_err(|_| Failure::new(1, "the plaintext's base64 did not fit its buffer"))?;
    body.extend_from_slice(mid);
    body.extend_from_slice(&context);
    body.push(b'}');
    debug_assert_eq!(body.len(), body.capacity(), "the body grew and left a copy");
    Ok(body)
}

/// A decrypt answer's plaintext, read in place from the answer's (wiped) bytes: base64 has
/// nothing to unescape, so no copy is made.
#[derive(serde::Deserialize)]
struct Opened<'a> {
    #[serde(borrow)]
    plaintext: &'a str,
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
    let body = encrypt_body(&input, &parse_context(&io.context)?)?;
    drop(input);
    let v = client
        .post_secret(&format!("/v1/orgs/{org}/scopes/{scope}/encrypt"), body)
        .await?;
    // Only a ciphertext is written: an answer without one must not leave an empty file and
    // exit 0 (a script would then shred the input).
    let path = format!("/v1/orgs/{org}/scopes/{scope}/encrypt");
    let v: serde_json::Value = serde_json::from_slice(&v).map_err(|_| client.unusable(&path))?;
    let ciphertext = s(&v, "ciphertext");
    if !ciphertext.starts_with(byok_core::format::armor::PREFIX) {
        return Err(client.unusable(&path));
    }
    let mut out = ciphertext.to_owned();
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
    let path = format!("/v1/orgs/{org}/decrypt");
    let answer = client
        .post_to_secret(
            &path,
            json!({ "ciphertext": text, "context": parse_context(&io.context)? }),
        )
        .await?;
    // A success without a plaintext is not byok's answer (exit 3), not a refusal (exit 1).
    let opened: Opened<'_> = serde_json::from_slice(&answer).map_err(|_| client.unusable(&path))?;
    let pt =
        Zeroizing::new(Base64::decode_vec(opened.plaintext).map_err(|_| client.unusable(&path))?);
    write_output(io, &pt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encrypt body is the JSON the server reads (context escaped as JSON), in a buffer
    /// exactly its size: no growth left a copy of the plaintext behind.
    #[test]
    fn an_encrypt_body_is_the_servers_json_in_one_buffer() {
        let ctx = BTreeMap::from([("tenant".to_owned(), "a \"quoted\" \\ name".to_owned())]);
        let body = encrypt_body(&[1, 2, 3, 255], &ctx).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({ "plaintext": "AQID/w==", "context": { "tenant": "a \"quoted\" \\ name" } })
        );
        assert_eq!(body.len(), body.capacity());
        let empty = encrypt_body(&[], &BTreeMap::new()).unwrap();
        assert_eq!(&empty[..], br#"{"plaintext":"","context":{}}"#);
    }

    /// Input longer than one read, in reads of any size, arrives whole.
    #[test]
    fn input_is_read_whole_across_chunks() {
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut buf = Zeroizing::new(Vec::new());
        read_wiped(std::io::Cursor::new(&data), &mut buf).unwrap();
        assert_eq!(&buf[..], &data[..]);
    }

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
