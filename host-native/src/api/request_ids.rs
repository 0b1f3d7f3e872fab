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
            inner: tokio::time::timeout(
                self.deadline,
                REQUEST_ID.scope(id, with_actor_slot(routed)),
            ),
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
    pub struct Answer {
        #[pin]
        inner: tokio::time::Timeout<
            TaskLocalFuture<RequestId, TaskLocalFuture<ActorSlot, RouteFuture<Infallible>>>,
        >,
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
        let mut resp = match ready!(this.inner.poll(cx)) {
            Ok(Ok(resp)) => resp,
            Ok(Err(never)) => match never {},
            Err(_) => REQUEST_ID.sync_scope(id, || {
                ApiError::new(
                    ApiCode::RequestTimeout,
                    format!(
                        "the request took longer than the server's {} s deadline (a slow body or a slow KMS); retry",
                        this.deadline.as_secs()
                    ),
                )
                .into_response()
            }),
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

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::Routes;

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
}
