# workerd configuration of the vectors Worker. tests/tests/edge_workerd.rs stages it beside the
# package (pkg/), the shared runner (shared/) and the vectors (vectors/) and fills @LISTEN@.
using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [ (name = "main", worker = .worker) ],
  sockets = [ (name = "http", address = "@LISTEN@", http = (), service = "main") ],
);

const worker :Workerd.Worker = (
  modules = [
    (name = "vectors_worker.js", esModule = embed "vectors_worker.js"),
    (name = "pkg/byok_wasm.js", esModule = embed "pkg/byok_wasm.js"),
    (name = "pkg/lease_client.js", esModule = embed "pkg/lease_client.js"),
    (name = "pkg/byok_wasm_bg.wasm", wasm = embed "pkg/byok_wasm_bg.wasm"),
    (name = "shared/vectors.mjs", esModule = embed "shared/vectors.mjs"),
    (name = "vectors/single.json", json = embed "vectors/single.json"),
    (name = "vectors/negative.json", json = embed "vectors/negative.json"),
    (name = "vectors/armor.json", json = embed "vectors/armor.json"),
  ],
  compatibilityDate = "2025-01-01",
);
