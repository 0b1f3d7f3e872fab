//! The data path in process: one encrypt and one decrypt request through byok's whole router
//! (request ids, token check, admission, sealing, JSON) beside the same requests through the
//! HTTP floor's router (`examples/http_floor.rs`: the same JSON and base64 work, nothing else).
//! No socket, so no kernel time: what is left is byok's own user-space cost per request, which
//! the wrk cells of `scripts/bench-server.sh` blur with scheduling and TCP.
//!
//!   cargo bench -p byok-server --bench data_path

use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "support/targets.rs"]
mod targets;

use targets::{Target, call, targets};

/// Runs the encrypt and decrypt cells of target `t`, named `name`.
fn cells<S>(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    t: &Target<S>,
) where
    S: tower::Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    g.bench_function(format!("encrypt/{name}"), |b| {
        b.iter(|| rt.block_on(call(&t.router, t.request("encrypt"))))
    });
    g.bench_function(format!("decrypt/{name}"), |b| {
        b.iter(|| rt.block_on(call(&t.router, t.request("decrypt"))))
    });
}

fn data_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (byok, floor) = rt.block_on(targets());
    let mut g = c.benchmark_group("data_path_1KiB");
    cells(&mut g, &rt, "floor", &floor);
    cells(&mut g, &rt, "byok", &byok);
    g.finish();
}

criterion_group!(benches, data_path);
criterion_main!(benches);
