# workerd configuration of the example Worker. The @...@ values are filled in by whoever runs it
# (tests/tests/edge_workerd.rs does, with a live `byok serve`); `pkg/` is host-wasm/pkg, as
# scripts/build-wasm.sh makes it.
#
#   npx workerd serve config.capnp
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    # byok on a private address (the tests' loopback); a public byok needs no such service.
    (name = "byok", network = (allow = ["private", "local", "public"])),
  ],
  sockets = [ (name = "http", address = "@LISTEN@", http = (), service = "main") ],
);

const worker :Workerd.Worker = (
  modules = [
    (name = "worker.js", esModule = embed "worker.js"),
    (name = "pkg/byok_wasm.js", esModule = embed "pkg/byok_wasm.js"),
    (name = "pkg/lease_client.js", esModule = embed "pkg/lease_client.js"),
    (name = "pkg/byok_wasm_bg.wasm", wasm = embed "pkg/byok_wasm_bg.wasm"),
  ],
  compatibilityDate = "2025-01-01",
  globalOutbound = "byok",
  bindings = [
    (name = "BYOK_SERVER", text = "@BYOK_SERVER@"),
    (name = "BYOK_ORG", text = "@BYOK_ORG@"),
    (name = "BYOK_SCOPE", text = "@BYOK_SCOPE@"),
    (name = "BYOK_TOKEN", text = "@BYOK_TOKEN@"),
    (name = "BYOK_AUDIENCE", text = "@BYOK_AUDIENCE@"),
    # The secret its callers send as `Authorization: Bearer ...` (a secret binding on
    # Cloudflare); or BYOK_EDGE_CALLERS = "upstream" when Access or a service binding checks them.
    (name = "BYOK_EDGE_CALLER_TOKEN", text = "@BYOK_EDGE_CALLER_TOKEN@"),
    # Empty, but while the caller token is rotated: the token callers move to (both are let in).
    (name = "BYOK_EDGE_CALLER_TOKEN_NEXT", text = "@BYOK_EDGE_CALLER_TOKEN_NEXT@"),
  ],
);
