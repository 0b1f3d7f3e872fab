//! Runs a wasm32-wasip1 command module under the `wasmtime` crate (the version the tests embed),
//! as cargo's runner for that target: the crate's vectors test, built for wasm32-wasip1, runs
//! here as it does under Node's WASI.
//!
//! ```sh
//! cargo build -p byok-tests --bin wasi-run
//! CARGO_TARGET_WASM32_WASIP1_RUNNER=target/debug/wasi-run cargo test -p byok-wasm --target wasm32-wasip1
//! ```

use std::process::ExitCode;

use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: wasi-run MODULE.wasm [ARGS...]");
        return ExitCode::from(2);
    };
    match run(path, &args) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("wasi-run: {path}: {e:?}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the module's `_start` with `args` (the module's path first, as argv[0]) and the
/// environment inherited; its exit code.
fn run(path: &str, args: &[String]) -> wasmtime::Result<i32> {
    let engine = Engine::default();
    let module = Module::from_file(&engine, path)?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(&engine);
    p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    let wasi = WasiCtxBuilder::new()
        .args(args)
        .inherit_stdout()
        .inherit_stderr()
        .inherit_env()
        .build_p1();
    let mut store = Store::new(&engine, wasi);
    let instance = linker.instantiate(&mut store, &module)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    match start.call(&mut store, ()) {
        Ok(()) => Ok(0),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(exit) => Ok(exit.0),
            None => Err(e),
        },
    }
}
