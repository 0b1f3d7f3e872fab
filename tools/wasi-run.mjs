// Runs a wasm32-wasip1 command module under Node's WASI (cargo's target runner):
//   CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings tools/wasi-run.mjs" cargo test --target wasm32-wasip1
import { readFile } from "node:fs/promises";
import { argv, env, exit } from "node:process";
import { WASI } from "node:wasi";

const [file, ...args] = argv.slice(2);
const wasi = new WASI({ version: "preview1", args: [file, ...args], env, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
const code = wasi.start(instance);
exit(typeof code === "number" ? code : 0);
