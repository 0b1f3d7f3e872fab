//! Files of any size with the streaming format: the CLI leases the scope's keys from the
//! server and encrypts or decrypts locally, frame by frame, in constant memory. Output to a
//! file goes to a temporary file renamed into place only when the whole stream checked out
//! ([`super::atomic_file`]), so a failure leaves no partial plaintext behind.

use std::io::Read;

use byok_core::format::Header;
use byok_core::lease::Lease;
use byok_core::stream::{StreamDecryptor, StreamEncryptor};
use byok_core::{Context, FrameSize, ScopeId, ScopeKey};
use serde_json::json;
use zeroize::Zeroizing;

use super::data::parse_context;
use super::sink::Sink;
use super::{Client, Failure, Io};

fn failure(message: impl Into<String>) -> Failure {
    Failure {
        code: 1,
        message: message.into(),
    }
}

/// The leased key `version` of `scope` (the newest if `None`), from a lease checked by core's
/// rules and refused once expired.
async fn leased_key(
    client: &Client,
    org: &str,
    scope: ScopeId,
    version: Option<u32>,
) -> Result<ScopeKey, Failure> {
    let answer = client.post_to_scope(org, scope, "lease", json!({})).await?;
    let lease = Lease::parse(answer.to_string().as_bytes())
        .map_err(|e| failure(format!("the server's answer: {e}")))?;
    if lease.scope() != scope {
        return Err(failure(format!(
            "the server's answer: a lease on scope {} instead of {scope}",
            lease.scope()
        )));
    }
    lease
        .check_live(now_ms())
        .map_err(|e| failure(format!("{e} (is this machine's clock right?)")))?;
    let key = match version {
        None => lease.current_key(),
        Some(v) => lease.key(v).ok_or_else(|| {
            failure(format!(
                "the lease has no key version {v} for scope {scope} (retired?)"
            ))
        })?,
    };
    Ok(ScopeKey::new(key.id(), key.duplicate_secret()))
}

/// Milliseconds since the Unix epoch, the unit of a lease's `expires_at`.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn input(io: &Io) -> Result<Box<dyn Read>, Failure> {
    match io.input.as_deref() {
        None => Ok(Box::new(std::io::stdin().lock())),
        Some(p) if p.as_os_str() == "-" => Ok(Box::new(std::io::stdin().lock())),
        Some(p) => std::fs::File::open(p)
            .map(|f| Box::new(std::io::BufReader::new(f)) as Box<dyn Read>)
            .map_err(|e| Failure::usage(format!("cannot read {}: {e}", p.display()))),
    }
}

/// Reads `reader` to its end in 64 KiB chunks; `step` turns each chunk into bytes in `staged`,
/// which go to `out` before the next chunk.
fn pump(
    reader: &mut impl Read,
    out: &mut Sink,
    staged: &mut Vec<u8>,
    mut step: impl FnMut(&[u8], &mut Vec<u8>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut buf = Zeroizing::new(vec![0u8; 1 << 16]);
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Failure::usage(format!("cannot read input: {e}")))?;
        if n == 0 {
            return Ok(());
        }
        step(buf.get(..n).unwrap_or_default(), staged)?;
        out.write(staged)?;
        staged.clear();
    }
}

/// Encrypts the input in the framed format under the scope's newest key.
pub(super) async fn encrypt(
    client: &Client,
    org: &str,
    scope: &str,
    io: &Io,
) -> Result<(), Failure> {
    let scope_id =
        ScopeId::parse_hex(scope).ok_or_else(|| Failure::usage("--scope must be 32 hex digits"))?;
    let key = leased_key(client, org, scope_id, None).await?;
    // The server's rules for a caller's context, so a stream made here opens there too.
    let ctx = Context::from_caller(parse_context(&io.context)?)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut enc = StreamEncryptor::<byok_core::DefaultBackend>::new(
        &key,
        &ctx,
        FrameSize::DEFAULT,
        &mut rand::rng(),
    )
    .map_err(|e| failure(e.to_string()))?;
    let mut out = Sink::open(io, false)?;
    out.write(enc.header())?;
    let mut reader = input(io)?;
    let mut sealed = Vec::with_capacity(1 << 17);
    pump(&mut reader, &mut out, &mut sealed, |chunk, sealed| {
        enc.update(chunk, sealed)
            .map_err(|e| failure(e.to_string()))
    })?;
    enc.finish(&mut sealed)
        .map_err(|e| failure(e.to_string()))?;
    out.write(&sealed)?;
    out.commit()
}

/// Decrypts a framed ciphertext whose first bytes `head` were already read from `reader`. Each
/// frame is written once it authenticated; to standard output with `buffer`, nothing is
/// written before the whole stream did.
pub(super) async fn decrypt(
    client: &Client,
    org: &str,
    io: &Io,
    buffer: bool,
    head: Vec<u8>,
    mut reader: Box<dyn Read>,
) -> Result<(), Failure> {
    let mut header_bytes = head;
    while header_bytes.len() < byok_core::format::HEADER_LEN {
        let mut b = [0u8; 1];
        match reader.read(&mut b) {
            Ok(0) => return Err(failure("input ends inside the header")),
            Ok(_) => header_bytes.extend_from_slice(&b),
            Err(e) => return Err(Failure::usage(format!("cannot read input: {e}"))),
        }
    }
    let (header, rest) =
        Header::parse(&header_bytes).map_err(|e| failure(format!("not a byok ciphertext: {e}")))?;
    let rest = rest.to_vec();
    let key = leased_key(client, org, header.key.scope, Some(header.key.version)).await?;
    // The server's rules for a caller's context, so a stream made here opens there too.
    let ctx = Context::from_caller(parse_context(&io.context)?)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut dec = StreamDecryptor::<byok_core::DefaultBackend>::new(&key, &ctx, &header)
        .map_err(|e| failure(e.to_string()))?;
    let mut out = Sink::open(io, buffer)?;
    let mut opened = Zeroizing::new(Vec::with_capacity(1 << 17));
    let mut reader = std::io::Cursor::new(rest).chain(reader);
    pump(&mut reader, &mut out, &mut opened, |chunk, opened| {
        dec.update(chunk, opened)
            .map_err(|e| failure(format!("the ciphertext does not open: {e}")))
    })?;
    dec.finish(&mut opened)
        .map_err(|e| failure(format!("the ciphertext does not open: {e}")))?;
    out.write(&opened)?;
    out.commit()
}

/// Opens the input and reads its first bytes, to tell the text armor from the binary format.
pub(super) fn sniff(io: &Io) -> Result<(Vec<u8>, Box<dyn Read>), Failure> {
    let mut reader = input(io)?;
    let mut head = Vec::with_capacity(8);
    let mut b = [0u8; 8];
    while head.len() < 8 {
        match reader.read(&mut b[..8 - head.len()]) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(b.get(..n).unwrap_or_default()),
            Err(e) => return Err(Failure::usage(format!("cannot read input: {e}"))),
        }
    }
    Ok((head, reader))
}
