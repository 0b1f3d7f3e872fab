//! What wraps every request, around the whole router: an id (in the `x-request-id` header, in
//! error bodies and in the log line written for it), the deadline, the body limit, and
//! `Cache-Control: no-store` on every answer (data keys, plaintexts, leases and new tokens must
//! never sit in a cache, and no answer of this API is worth caching).
//!
//! Why around the router and not `Router::layer`: axum applies a layer to every route
//! separately, boxing each route again, so each layer cost a boxed clone and a boxed future per
//! request. Here the router is called directly and the answer's future is a named type, not a
//! box. The log line's route template (never the concrete path, which holds ids) then comes from
//! a table of the same templates the router was built from ([`Routes`]), looked up only when
//! the line is written.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use byok_core::ApiCode;
use tokio::task::futures::TaskLocalFuture;

use super::error::{ApiError, REQUEST_ID, RequestId};
use crate::store::audit::{ActorSlot, with_actor_slot};

/// The route templates the router was built from, to name a request's route in its log line.
#[derive(Default)]
pub struct Routes(matchit::Router<&'static str>);

impl Routes {
    /// Adds `template` (in axum's syntax, which is matchit's: `{id}`, `{*rest}`).
    pub fn add(&mut self, template: &'static str) {
        // The router refuses a template it cannot take before this runs; a duplicate is the
        // only error left, and the first entry names it as well as the second would.
        let _ = self.0.insert(template, template);
    }

    /// The template `path` matches, if any.
    fn template(&self, path: &str) -> Option<&'static str> {
        self.0.at(path).ok().map(|m| *m.value)
    }
}

/// The API: the router inside the per-request frame above. Cheap to clone (one per connection).
#[derive(Clone)]
pub struct Api {
    router: Router,
    routes: Arc<Routes>,
    deadline: Duration,
    body_limit: DefaultBodyLimit,
}

impl Api {
    /// Wraps `router`, whose templates are `routes`; a request may take `deadline` in all and
    /// send a body of `body_limit` bytes at most.
    pub fn new(router: Router, routes: Routes, deadline: Duration, body_limit: usize) -> Self {
        Self {
            router,
            routes: Arc::new(routes),
            deadline,
            body_limit: DefaultBodyLimit::max(body_limit),
        }
    }
}

impl<B> tower::Service<Request<B>> for Api
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<Request<Body>>::poll_ready(&mut self.router, cx)
    }

    fn call(&mut self, req: Request<B>) -> Answer {
        let mut req = req.map(Body::new);
        self.body_limit.apply(&mut req);
        let id = RequestId(rand_core::Rng::next_u64(&mut rand::rng()));
        // The log line's fields are gathered only when it is written.
        let log = tracing::enabled!(tracing::Level::INFO).then(|| Log {
            method: req.method().clone(),
            route: self.routes.template(req.uri().path()),
            started: Instant::now(),
        });
        let routed = tower::Service::call(&mut self.router, req);
        Answer {
            inner: REQUEST_ID.scope(id, with_actor_slot(routed)),
            sleep: None,
            id,
            deadline: self.deadline,
            log,
        }
    }
}

/// The request's log line, gathered before it runs.
struct Log {
    method: Method,
    route: Option<&'static str>,
    started: Instant,
}

pin_project_lite::pin_project! {
    /// A request's answer in the making: the routed request within its deadline, with its id
    /// and actor slot in scope.
    ///
    /// The deadline's timer is made the first time the request waits (a body still arriving, a
    /// KMS call): most data calls answer in their first poll and never need one, so they read
    /// no clock and touch no timer for it. The deadline therefore counts from that first wait,
    /// which comes microseconds after the request reached the router.
    pub struct Answer {
        #[pin]
        inner: TaskLocalFuture<RequestId, TaskLocalFuture<ActorSlot, RouteFuture<Infallible>>>,
        sleep: Option<Pin<Box<tokio::time::Sleep>>>,
        id: RequestId,
        deadline: Duration,
        log: Option<Log>,
    }
}

impl Future for Answer {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let id = *this.id;
        // Dropping the handler at the deadline is safe: a transition cut short re-reads its org
        // from storage before anything else is admitted (`OrgCell::transition_with`).
        let mut resp = match this.inner.poll(cx) {
            Poll::Ready(Ok(resp)) => resp,
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending => {
                let deadline = *this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(deadline)));
                ready!(sleep.as_mut().poll(cx));
                REQUEST_ID.sync_scope(id, || too_late(deadline))
            }
        };
        if let Some(Log {
            method,
            route,
            started,
        }) = this.log.take()
        {
            tracing::info!(request_id = %id, %method, route = route.unwrap_or("unmatched"),
                status = resp.status().as_u16(),
                micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX), "request");
        }
        let mut hex = [0u8; 16];
        for (i, b) in id.0.to_be_bytes().iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        if let Ok(v) = HeaderValue::from_bytes(&hex) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        Poll::Ready(Ok(resp))
    }
}

/// The answer to a request past its `deadline` (built within its request id's scope, which
/// the error body names).
fn too_late(deadline: Duration) -> Response {
    ApiError::new(
        ApiCode::RequestTimeout,
        format!(
            "the request took longer than the server's {} s deadline (a slow body or a slow KMS); retry",
            deadline.as_secs()
        ),
    )
    .into_response()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::routing::post;

    use super::{Api, Routes};

    #[test]
    fn a_path_is_named_by_its_template() {
        let mut r = Routes::default();
        r.add("/v1/orgs/{org}/decrypt");
        r.add("/ui/{*path}");
        let org = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            r.template(&format!("/v1/orgs/{org}/decrypt")),
            Some("/v1/orgs/{org}/decrypt")
        );
        assert_eq!(r.template("/ui/a/b.js"), Some("/ui/{*path}"));
        assert_eq!(r.template("/v1/nothing"), None);
    }

    /// Held by the tests that go through the frame: tracing caches each callsite's interest
    /// process-wide, and a frame test running beside the log test could register the log
    /// line's callsite while the log test's subscriber is being set up, leaving it off.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn api(deadline: Duration) -> Api {
        let mut routes = Routes::default();
        routes.add("/v1/orgs/{org}/decrypt");
        let router = Router::new()
            .route("/v1/orgs/{org}/decrypt", post(|| async { "ok" }))
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            );
        Api::new(router, routes, deadline, 16)
    }

    async fn call(api: &Api, path: &str, body: &'static str) -> axum::response::Response {
        let req = Request::post(path).body(Body::from(body)).unwrap();
        tower::Service::call(&mut api.clone(), req).await.unwrap()
    }

    /// Every answer gets an id and `no-store`; the log line names the route's template, never
    /// the ids in the path, and the same request id.
    #[tokio::test]
    async fn the_log_line_names_the_template_and_the_answer_its_id() {
        let _serial = SERIAL.lock().await;
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let org = "0123456789abcdef0123456789abcdef";
        let resp = call(
            &api(Duration::from_secs(5)),
            &format!("/v1/orgs/{org}/decrypt"),
            "",
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 16);
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(
            log.contains("route=\"/v1/orgs/{org}/decrypt\"")
                || log.contains("route=/v1/orgs/{org}/decrypt"),
            "{log}"
        );
        assert!(log.contains(&format!("request_id={id}")), "{log}");
        assert!(!log.contains(org), "{log}");
        let resp = call(&api(Duration::from_secs(5)), "/nowhere", "").await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let log = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(
            log.contains("route=\"unmatched\"") || log.contains("route=unmatched"),
            "{log}"
        );
    }

    /// The deadline answers 408 with the request's id; the body limit is applied to the
    /// router's extractors.
    #[tokio::test(start_paused = true)]
    async fn the_deadline_and_the_body_limit_hold_around_the_router() {
        let _serial = SERIAL.lock().await;
        let api = api(Duration::from_secs(2));
        let started = tokio::time::Instant::now();
        let resp = call(&api, "/slow", "").await;
        assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "request_timeout");
        assert_eq!(v["error"]["request_id"], id);
        // A String body extractor under the 16-byte limit of `api()`.
        let mut routes = Routes::default();
        routes.add("/echo");
        let echo = Api::new(
            Router::new().route("/echo", post(|b: String| async move { b })),
            routes,
            Duration::from_secs(2),
            16,
        );
        let resp = call(&echo, "/echo", "0123456789abcdef0").await;
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let resp = call(&echo, "/echo", "0123456789abcdef").await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
