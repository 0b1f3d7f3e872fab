//! The key-setup page at `/ui/`: its files are embedded at build time (`build.rs`: the page
//! from `host-wasm/web`, the JS package from `host-wasm/pkg` when built), so no CDN and no file
//! beside the binary. Served with a strict Content-Security-Policy: scripts and styles from
//! this origin only, no inline script, no `eval` beyond compiling WebAssembly
//! (`'wasm-unsafe-eval'`), requests to this origin only, never framed. Loading the page needs no
//! token; everything it shows comes from the API with the token the admin pastes, which the
//! page keeps in memory.

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use byok_core::ApiCode;

use super::error::ApiError;
use super::extract::ApiPath;

include!(concat!(env!("OUT_DIR"), "/setup_page_assets.rs"));

/// The page's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
                       style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

/// `/ui`: to the page.
pub(super) async fn redirect() -> Redirect {
    Redirect::permanent("/ui/")
}

/// `/ui/`: the page.
pub(super) async fn index() -> Response {
    asset("index.html")
}

/// `/ui/{path}`: one of its files.
pub(super) async fn file(ApiPath(path): ApiPath<String>) -> Response {
    asset(&path)
}

fn asset(path: &str) -> Response {
    let Some((_, bytes)) = ASSETS.iter().find(|(p, _)| *p == path) else {
        return ApiError::new(ApiCode::NotFound, "no such file of the setup page").into_response();
    };
    let content_type = match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // Once the page was reached over HTTPS (byok's TLS or a proxy's), the browser
            // keeps to HTTPS for a year: the admin token is never typed into a page that a
            // network attacker downgraded. Browsers ignore it over plain HTTP (RFC 6797).
            (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        ],
        *bytes,
    )
        .into_response()
}
