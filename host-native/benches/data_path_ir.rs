//! The data path in instructions: `N` requests of one kind through one router, for callgrind to
//! count. Time on this machine moves 10-25 % within seconds, more than the changes worth making
//! to the data path; the instructions a request executes do not move at all, so a change of
//! 0.5 % shows, and callgrind names the functions it came from. Instructions are not time (a
//! cache miss costs no instruction): confirm a change in time with `data_path` and the wrk
//! cells of `scripts/bench-server.sh`.
//!
//!   ./scripts/bench-instructions.sh        # both ops, byok and the floor, with the difference
//!   cargo bench -p byok-server --bench data_path_ir -- encrypt byok 1000   # under callgrind

use std::hint::black_box;

use axum::body::Body;
use axum::http::Request;

#[path = "support/targets.rs"]
mod targets;

use targets::{Target, call, targets};

/// The counted part: callgrind starts counting when this is entered and stops when it returns
/// (`--toggle-collect`), so setup, warm-up and the runtime's start are left out.
#[inline(never)]
fn byok_counted_requests<S>(rt: &tokio::runtime::Runtime, t: &Target<S>, op: &str, n: usize)
where
    S: tower::Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    for _ in 0..n {
        black_box(rt.block_on(call(&t.router, t.request(op))));
    }
}

/// Sends both kinds of request a few times (caches filled, the usage mark written, lazily made
/// state made), then `n` of kind `op`, counted.
fn warm_then_count<S>(rt: &tokio::runtime::Runtime, t: &Target<S>, op: &str, n: usize)
where
    S: tower::Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    for _ in 0..50 {
        for op in ["encrypt", "decrypt"] {
            black_box(rt.block_on(call(&t.router, t.request(op))));
        }
    }
    byok_counted_requests(rt, t, op, n);
}

fn main() -> Result<(), String> {
    // `cargo bench` passes `--bench`; the rest are ours.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let usage = "usage: data_path_ir <encrypt|decrypt> <byok|floor> [N]";
    let op = args.first().ok_or(usage)?.clone();
    let server = args.get(1).ok_or(usage)?.clone();
    if !matches!(op.as_str(), "encrypt" | "decrypt") || !matches!(server.as_str(), "byok" | "floor")
    {
        return Err(usage.into());
    }
    let n = match args.get(2) {
        Some(n) => n.parse().map_err(|_| usage.to_string())?,
        None => 1000,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let (byok, floor) = rt.block_on(targets());
    if server == "byok" {
        warm_then_count(&rt, &byok, &op, n);
    } else {
        warm_then_count(&rt, &floor, &op, n);
    }
    println!("{op} {server} {n}");
    Ok(())
}
