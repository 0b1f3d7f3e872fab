//! Files of any size with the streaming format: the CLI leases the scope's keys from the
//! server and encrypts or decrypts locally, frame by frame, in constant memory. Output to a
//! file goes to a temporary file renamed into place only when the whole stream checked out
//! ([`super::atomic_file`]), so a failure leaves no partial plaintext behind. The lease is
//! renewed while the stream runs, and a refused renewal stops it ([`super::lease`]).

use std::io::Read;

use byok_core::format::Header;
use byok_core::stream::{StreamDecryptor, StreamEncryptor};
use byok_core::{Context, FrameSize, ScopeId};
use zeroize::Zeroizing;

use super::data::parse_context;
use super::lease::{HeldLease, LeaseSource, Server};
use super::sink::Sink;
use super::{Client, Failure, Io};

fn failure(message: impl Into<String>) -> Failure {
    Failure::new(1, message)
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
/// which go to `out` before the next chunk. After each read, the end included (so before the
/// final frame too), the lease is kept: renewed when due, and a refusal stops the stream before
/// `step` runs again.
async fn pump(
    reader: &mut impl Read,
    out: &mut Sink,
    staged: &mut Vec<u8>,
    lease: &mut HeldLease,
    source: &impl LeaseSource,
    mut step: impl FnMut(&[u8], &mut Vec<u8>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let mut buf = Zeroizing::new(vec![0u8; 1 << 16]);
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Failure::usage(format!("cannot read input: {e}")))?;
        // A read may block for long (a slow pipe): the time is checked after it.
        lease.keep(source).await?;
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
    // The server's rules for a caller's context, so a stream made here opens there too.
    let ctx = Context::from_caller(parse_context(&io.context)?)
        .map_err(|e| Failure::usage(e.to_string()))?;
    // The input first: a missing file takes no lease and leaves no header behind on stdout.
    let mut reader = input(io)?;
    let source = Server { client, org };
    let (mut lease, key) = HeldLease::take(&source, scope_id, None).await?;
    let mut enc = StreamEncryptor::<byok_core::DefaultBackend>::new(
        &key,
        &ctx,
        FrameSize::DEFAULT,
        &mut rand::rng(),
    )
    .map_err(|e| failure(e.to_string()))?;
    let mut out = Sink::open(io, false)?;
    out.write(enc.header())?;
    let mut sealed = Vec::with_capacity(1 << 17);
    pump(
        &mut reader,
        &mut out,
        &mut sealed,
        &mut lease,
        &source,
        |chunk, sealed| {
            enc.update(chunk, sealed)
                .map_err(|e| failure(e.to_string()))
        },
    )
    .await?;
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
    let source = Server { client, org };
    let (mut lease, key) =
        HeldLease::take(&source, header.key.scope, Some(header.key.version)).await?;
    // The server's rules for a caller's context, so a stream made here opens there too.
    let ctx = Context::from_caller(parse_context(&io.context)?)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut dec = StreamDecryptor::<byok_core::DefaultBackend>::new(&key, &ctx, &header)
        .map_err(|e| failure(e.to_string()))?;
    let mut out = Sink::open(io, buffer)?;
    let mut opened = Zeroizing::new(Vec::with_capacity(1 << 17));
    let mut reader = std::io::Cursor::new(rest).chain(reader);
    pump(
        &mut reader,
        &mut out,
        &mut opened,
        &mut lease,
        &source,
        |chunk, opened| {
            dec.update(chunk, opened)
                .map_err(|e| failure(format!("the ciphertext does not open: {e}")))
        },
    )
    .await?;
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

#[cfg(test)]
mod tests {
    use byok_core::ApiCode;
    use byok_core::lease::Lease;

    use super::super::lease::tests::{Fake, SCOPE, lease, refusal};
    use super::super::spool::Spool;
    use super::*;

    /// Input of `left` reads of 1000 bytes (each read's bytes = its index), each read 10 s
    /// after the one before on `fake`'s clock: a slow pipe.
    struct Slow<'a> {
        fake: &'a Fake,
        left: u8,
        next: u8,
    }

    impl Read for Slow<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.fake.now.set(self.fake.now.get() + 10_000);
            if self.left == 0 {
                return Ok(0);
            }
            self.left -= 1;
            buf[..1000].fill(self.next);
            self.next += 1;
            Ok(1000)
        }
    }

    /// Pumps `reads` slow reads through a copying step under a lease on [`SCOPE`] ending at
    /// 60 s, the later leases asked for answered by `renewals`: what came out, and how it ended.
    async fn stream(
        reads: u8,
        renewals: Vec<Result<Lease, Failure>>,
    ) -> (Vec<u8>, Result<(), Failure>, u32) {
        let fake = Fake::answering(vec![Ok(lease(&[1], 60_000))]);
        fake.answers.borrow_mut().extend(renewals);
        let (mut held, _key) = HeldLease::take(&fake, SCOPE, Some(1)).await.unwrap();
        let mut out = Sink::Held(Spool::new(1 << 20));
        let mut reader = Slow {
            fake: &fake,
            left: reads,
            next: 0,
        };
        let copy = |chunk: &[u8], staged: &mut Vec<u8>| {
            staged.extend_from_slice(chunk);
            Ok(())
        };
        let end = pump(
            &mut reader,
            &mut out,
            &mut Vec::new(),
            &mut held,
            &fake,
            copy,
        )
        .await;
        let Sink::Held(spool) = out else {
            panic!("the test's sink is held");
        };
        let mut bytes = Vec::new();
        spool.copy_to(&mut bytes).unwrap();
        (bytes, end, fake.asked.get())
    }

    #[tokio::test]
    async fn a_long_stream_renews_its_lease_and_stops_at_the_first_refusal() {
        // Renewed at 30 s (to 90 s, so next due at 60 s), refused at 60 s.
        let (bytes, end, asked) = stream(
            100,
            vec![Ok(lease(&[1], 90_000)), Err(refusal(ApiCode::ScopePaused))],
        )
        .await;
        let f = end.unwrap_err();
        assert_eq!((f.code, f.api), (1, Some(ApiCode::ScopePaused)));
        assert_eq!(asked, 3);
        // The reads at 10..=50 s went through; the one at 60 s, and all after it, did not.
        assert_eq!(bytes.len(), 5000);
        assert_eq!(bytes.last(), Some(&4));
    }

    #[tokio::test]
    async fn the_lease_is_kept_before_the_final_frame_too() {
        // Two reads (10 s, 20 s), then the end of the input at 30 s, when renewal is due.
        let (bytes, end, _) = stream(2, vec![Err(refusal(ApiCode::ScopeRevoked))]).await;
        assert_eq!(end.unwrap_err().api, Some(ApiCode::ScopeRevoked));
        assert_eq!(bytes.len(), 2000);
        let (_, end, asked) = stream(2, vec![Ok(lease(&[1], 90_000))]).await;
        assert!(end.is_ok());
        assert_eq!(asked, 2);
    }

    #[tokio::test]
    async fn a_stream_that_ends_before_renewal_is_due_asks_for_one_lease() {
        // One read at 10 s, the end at 20 s.
        let (bytes, end, asked) = stream(1, vec![]).await;
        assert!(end.is_ok());
        assert_eq!((bytes.len(), asked), (1000, 1));
    }
}
