//! The key-setup page's foundation: `byok serve` serves it at `/ui/` from files embedded at
//! build time, with a strict CSP and `X-Frame-Options: DENY`; in headless Chromium it loads its
//! WebAssembly under that CSP and fetches nothing from another origin.

use std::process::Command;

use byok_tests::fixtures::TestServer;
use serde_json::Value;

/// The page's exact policy: scripts and styles from this origin, wasm may compile, nothing else.
const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
                   img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_with_its_csp_and_never_framed() {
    let ts = TestServer::start("setup-page");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str| http.get(format!("{}{path}", ts.url)).send();

    let r = get("/ui").await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/ui/");

    for (path, content_type) in [
        ("/ui/", "text/html; charset=utf-8"),
        ("/ui/app.js", "text/javascript; charset=utf-8"),
        ("/ui/app.css", "text/css; charset=utf-8"),
        ("/ui/pkg/byok_wasm_bg.wasm", "application/wasm"),
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], content_type, "{path}");
        assert_eq!(h["content-security-policy"], CSP, "{path}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
    }
    // Only the embedded files: nothing else of the server's disk, however the path is spelled.
    for path in [
        "/ui/nope.js",
        "/ui/../Cargo.toml",
        "/ui/%2e%2e/Cargo.toml",
        "/ui/pkg/",
    ] {
        let r = get(path).await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_page_loads_its_wasm_under_the_csp_from_this_origin_only() {
    let ts = TestServer::start("setup-page-chromium");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../host-wasm/tests/browser/setup_page_live.mjs");
    let out = Command::new("node")
        .arg(script)
        .arg(&ts.url)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ready"], true, "{v}");
    assert_eq!(v["csp"], CSP, "{v}");
    assert_eq!(v["foreign"], serde_json::json!([]), "{v}");
    assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    let requests = v["requests"].as_array().unwrap();
    assert!(
        requests
            .iter()
            .any(|u| u.as_str().unwrap().ends_with("/ui/pkg/byok_wasm_bg.wasm")),
        "{v}"
    );
}
