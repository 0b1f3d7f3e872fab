//! Secrets are wiped before their memory is freed: the plaintext a stream encryptor holds back
//! (grown as input arrives, emptied when sealed, dropped with a finished or abandoned stream),
//! a buffer grown by `extend_wiped`, and a body read in chunks by the edge's `wasi:http`
//! component. Checked by this binary's allocator, which reads every
//! block freed while a test watches, for a run of the secret's marker byte.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use byok_core::crypto::backend::{AwsLc, Failing, RustCrypto};
use byok_core::stream::StreamEncryptor;
use byok_core::{AeadBackend, Context, FrameSize, KeyId, ScopeId, ScopeKey, SecretBytes};

/// The plaintext's every byte; a run of [`RUN`] of them in freed memory is a copy left behind.
const MARKER: u8 = 0xA7;
const RUN: usize = 24;

static WATCHING: AtomicBool = AtomicBool::new(false);
static LEFT_BEHIND: AtomicUsize = AtomicUsize::new(0);
/// One watcher at a time: the tests of this binary run on several threads.
static ONE: Mutex<()> = Mutex::new(());

struct Inspecting;

// SAFETY: every call is passed to `System` as is; `dealloc` only reads the block it is given,
// which is still allocated, before handing it back.
unsafe impl GlobalAlloc for Inspecting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if WATCHING.load(Ordering::SeqCst) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes until `System` frees it.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            let mut run = 0;
            for &b in block {
                run = if b == MARKER { run + 1 } else { 0 };
                if run == RUN {
                    LEFT_BEHIND.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Inspecting = Inspecting;

fn key() -> ScopeKey {
    ScopeKey::new(
        KeyId::new(ScopeId::from_bytes([3; 16]), 1),
        SecretBytes::from_bytes(&mut [9; 32]),
    )
}

/// Feeds `chunks` chunks of 10 marker bytes (less than a frame: the encryptor holds all of it
/// back, growing), then finishes or abandons the stream; returns how many freed blocks held a
/// run of the plaintext meanwhile.
fn freed_copies<B: AeadBackend>(chunks: usize, finish: bool) -> usize {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let (key, ctx, chunk) = (key(), Context::new(), [MARKER; 10]);
    let mut rng = rand::rng();
    // Room for everything up front: its growth would free ciphertext, not plaintext, but the
    // check is on whatever is freed.
    let mut out = Vec::with_capacity(1 << 20);
    let mut enc = StreamEncryptor::<B>::new(&key, &ctx, FrameSize::DEFAULT, &mut rng).unwrap();
    LEFT_BEHIND.store(0, Ordering::SeqCst);
    WATCHING.store(true, Ordering::SeqCst);
    for _ in 0..chunks {
        enc.update(&chunk, &mut out).unwrap();
    }
    if finish {
        enc.finish(&mut out).unwrap();
    } else {
        drop(enc);
    }
    WATCHING.store(false, Ordering::SeqCst);
    assert!(!out.windows(RUN).any(|w| w.iter().all(|&b| b == MARKER)));
    LEFT_BEHIND.load(Ordering::SeqCst)
}

#[test]
fn a_held_back_frame_is_wiped_as_it_grows_and_when_dropped() {
    for finish in [false, true] {
        assert_eq!(
            freed_copies::<RustCrypto>(300, finish),
            0,
            "finish {finish}"
        );
        assert_eq!(freed_copies::<AwsLc>(300, finish), 0, "finish {finish}");
    }
}

/// A buffer of secret bytes grown piece by piece (an answer holding key material) leaves no
/// copy in the smaller buffers it grew out of, nor when dropped.
#[test]
fn a_buffer_grown_by_extend_wiped_leaves_no_copy() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    LEFT_BEHIND.store(0, Ordering::SeqCst);
    WATCHING.store(true, Ordering::SeqCst);
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    for _ in 0..500 {
        byok_core::secret::extend_wiped(&mut buf, &[MARKER; 7]);
    }
    assert_eq!(buf.len(), 3500);
    drop(buf);
    WATCHING.store(false, Ordering::SeqCst);
    assert_eq!(LEFT_BEHIND.load(Ordering::SeqCst), 0);
}

/// Whole frames pass through too: the frame held back is wiped once sealed, so the next one
/// grows into a wiped buffer.
#[test]
fn frames_sealed_one_after_another_leave_no_copy() {
    let frame = FrameSize::DEFAULT.bytes();
    assert_eq!(freed_copies::<RustCrypto>(frame / 10 * 3 + 7, true), 0);
}

/// A frame whose sealing fails leaves no plaintext in the output it was copied into: the
/// region is wiped, not only cut off (it would stay in the buffer's spare room, and be freed
/// with it).
#[test]
fn a_frame_that_fails_to_seal_is_wiped_from_the_output() {
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    let (key, ctx) = (key(), Context::new());
    let mut rng = rand::rng();
    let frame = FrameSize::DEFAULT.bytes();
    // The caller's plaintext, wiped when dropped: only copies the encryptor made can count.
    let input = zeroize::Zeroizing::new(vec![MARKER; frame * 2]);
    let mut out = Vec::with_capacity(frame * 4);
    let mut enc =
        StreamEncryptor::<Failing>::new(&key, &ctx, FrameSize::DEFAULT, &mut rng).unwrap();
    LEFT_BEHIND.store(0, Ordering::SeqCst);
    WATCHING.store(true, Ordering::SeqCst);
    let failed = enc.update(&input, &mut out);
    assert!(
        matches!(failed, Err(byok_core::Error::Internal(_))),
        "{failed:?}"
    );
    assert!(out.is_empty(), "the failed frame was left in the output");
    drop(enc);
    drop(input);
    drop(out);
    WATCHING.store(false, Ordering::SeqCst);
    assert_eq!(LEFT_BEHIND.load(Ordering::SeqCst), 0);
}

/// The `wasi:http` component's reader of bodies that hold secrets (a lease answer, a plaintext
/// to encrypt): each chunk the stream hands over, a buffer of its own, is wiped once copied, as
/// is the body as it grows and when dropped, and when it passes its limit.
#[test]
fn a_body_read_in_chunks_leaves_no_copy() {
    use byok_wasm::body::{ReadError, read_wiped};
    let _one = ONE.lock().unwrap_or_else(|p| p.into_inner());
    LEFT_BEHIND.store(0, Ordering::SeqCst);
    WATCHING.store(true, Ordering::SeqCst);
    let mut left = 300;
    let whole = read_wiped(
        || {
            if left == 0 {
                return Ok(None);
            }
            left -= 1;
            Ok(Some(vec![MARKER; 100]))
        },
        0,
        1 << 20,
    );
    assert_eq!(whole.map(|b| b.len()), Ok(30_000));
    let over = read_wiped(|| Ok(Some(vec![MARKER; 100])), 0, 1_000);
    assert_eq!(over.map(drop), Err(ReadError::TooLarge));
    WATCHING.store(false, Ordering::SeqCst);
    assert_eq!(LEFT_BEHIND.load(Ordering::SeqCst), 0);
}
