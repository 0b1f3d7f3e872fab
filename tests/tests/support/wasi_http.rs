//! A `wasi:http` host embedded in `edge_wasi.rs`: host-wasm's proxy component (wasm32-wasip2) run by
//! the `wasmtime` crate with its WASI and wasi-http implementations, as `wasmtime serve` runs it
//! but without a socket: requests are handed to the component's `incoming-handler` directly.
//!
//! One instance serves every request, so the component's in-memory lease lives across them (a
//! host that instantiates per request gets a lease per request; docs/edge.md).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::Mutex;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The component as the test command builds it
/// (`cargo build --release -p byok-wasm --target wasm32-wasip2`), in the target directory these
/// tests were built into.
pub(crate) fn component_path() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        // target/<profile>/deps/<test binary>
        None => std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
            .expect("the test binary's target directory"),
    };
    let path = target.join("wasm32-wasip2/release/byok_wasm.wasm");
    assert!(
        path.exists(),
        "no component at {}: run `cargo build --release -p byok-wasm --target wasm32-wasip2` \
         (the test command does)",
        path.display()
    );
    path
}

/// The component's wall clock: the system's, moved by the ms in the shared value (positive:
/// ahead), which the test sets to step it as NTP would. Its monotonic clock is the system's.
#[derive(Clone, Default)]
pub(crate) struct SteppedWall(pub(crate) Arc<AtomicI64>);

impl SteppedWall {
    /// Moves the clock to `offset_ms` from the system's.
    pub(crate) fn set(&self, offset_ms: i64) {
        self.0.store(offset_ms, Ordering::SeqCst);
    }
}

impl HostWallClock for SteppedWall {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let offset = self.0.load(Ordering::SeqCst);
        let by = Duration::from_millis(offset.unsigned_abs());
        if offset >= 0 { real + by } else { real - by }
    }
}

struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

/// The component, instantiated once, with `env` as its environment.
pub(crate) struct WasiHttpHost {
    instance: Mutex<(Store<State>, Proxy)>,
    /// What [`Self::post`] sends as `Authorization`: `Bearer` and the environment's
    /// `BYOK_EDGE_CALLER_TOKEN`, when it has one.
    authorization: Option<String>,
}

impl WasiHttpHost {
    /// Compiles and instantiates the component at `path`.
    pub(crate) async fn start(path: &std::path::Path, env: &[(&str, &str)]) -> Self {
        Self::start_with_wall(path, env, SteppedWall::default()).await
    }

    /// [`Self::start`], with `wall` as the component's wall clock.
    pub(crate) async fn start_with_wall(
        path: &std::path::Path,
        env: &[(&str, &str)],
        wall: SteppedWall,
    ) -> Self {
        let engine = Engine::new(&Config::new()).expect("engine");
        let component = Component::from_file(&engine, path).expect("the component compiles");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("WASI");
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).expect("wasi-http");
        let state = State {
            wasi: WasiCtx::builder()
                .envs(env)
                .inherit_stderr()
                .wall_clock(wall)
                .build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
        };
        let mut store = Store::new(&engine, state);
        let proxy = Proxy::instantiate_async(&mut store, &component, &linker)
            .await
            .expect("the component is a wasi:http proxy");
        let authorization = env
            .iter()
            .find(|(k, _)| *k == "BYOK_EDGE_CALLER_TOKEN")
            .map(|(_, token)| format!("Bearer {token}"));
        Self {
            instance: Mutex::new((store, proxy)),
            authorization,
        }
    }

    /// `POST path_and_query` with `body`, as a known caller: the status and body of the
    /// component's answer.
    pub(crate) async fn post(
        &self,
        path_and_query: &str,
        body: impl Into<Bytes>,
    ) -> (u16, Vec<u8>) {
        self.post_as(self.authorization.as_deref(), path_and_query, body)
            .await
    }

    /// [`Self::post`] with `authorization` as the `Authorization` header (none if `None`).
    pub(crate) async fn post_as(
        &self,
        authorization: Option<&str>,
        path_and_query: &str,
        body: impl Into<Bytes>,
    ) -> (u16, Vec<u8>) {
        let (status, _, body) = self.reply(authorization, path_and_query, body).await;
        (status, body)
    }

    /// [`Self::post_as`], with the answer's headers.
    pub(crate) async fn reply(
        &self,
        authorization: Option<&str>,
        path_and_query: &str,
        body: impl Into<Bytes>,
    ) -> (u16, hyper::HeaderMap, Vec<u8>) {
        let mut request = hyper::Request::post(format!("http://edge.test{path_and_query}"));
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        let request = request
            .body(
                Full::new(body.into()).map_err(|never: Infallible| -> ErrorCode { match never {} }),
            )
            .unwrap();
        let mut guard = self.instance.lock().await;
        let (store, proxy) = &mut *guard;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let req = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)
            .unwrap();
        let out = store
            .data_mut()
            .http()
            .new_response_outparam(sender)
            .unwrap();
        // The answer's body is read while the handler runs: the component writes it through a
        // bounded channel.
        let handled = proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut *store, req, out);
        let answered = async {
            let response = receiver
                .await
                .expect("the component set a response")
                .expect("the response is not an error");
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await.expect("the body");
            (status, headers, body.to_bytes().to_vec())
        };
        let (handled, answer) = tokio::join!(handled, answered);
        handled.expect("the handler returned");
        answer
    }
}
