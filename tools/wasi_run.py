#!/usr/bin/env python3
"""Runs a wasm32-wasip1 command module under wasmtime (PyPI `wasmtime`), as cargo's runner:

    CARGO_TARGET_WASM32_WASIP1_RUNNER="python tools/wasi_run.py" cargo test --target wasm32-wasip1
"""
import sys

from wasmtime import Engine, ExitTrap, Linker, Module, Store, WasiConfig


def main() -> int:
    path, args = sys.argv[1], sys.argv[2:]
    engine = Engine()
    store = Store(engine)
    wasi = WasiConfig()
    wasi.argv = [path, *args]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    wasi.inherit_env()
    store.set_wasi(wasi)
    linker = Linker(engine)
    linker.define_wasi()
    instance = linker.instantiate(store, Module.from_file(engine, path))
    try:
        instance.exports(store)["_start"](store)
    except ExitTrap as e:
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
