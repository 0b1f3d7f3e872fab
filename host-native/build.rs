//! Embeds the key-setup page (`host-wasm/web`) and, when it has been built, the JS package the
//! page loads (`host-wasm/pkg`, from `scripts/build-wasm.sh`), so that `byok serve` serves them
//! with no files beside the binary. Without the package the server still builds, and the page
//! says how to build it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The package files the page loads.
const PACKAGE: [&str; 3] = ["byok_wasm.js", "byok_wasm_bg.wasm", "lease_client.js"];

fn main() {
    // Read at run time, not with `env!`: a build script's binary can be reused from another
    // checkout of the same sources (a shared target directory), and must not look there.
    let root =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("..");
    let web = root.join("host-wasm/web");
    let pkg = root.join("host-wasm/pkg");
    println!("cargo:rerun-if-changed={}", web.display());
    // A missing path would rerun this script on every build: watch the package only once it
    // exists, and its parent's listing until then.
    if pkg.exists() {
        println!("cargo:rerun-if-changed={}", pkg.display());
    } else {
        println!(
            "cargo:rerun-if-changed={}",
            root.join("host-wasm").display()
        );
    }
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&web)
        .expect("host-wasm/web")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        files.push((name.clone(), web.join(name)));
    }
    for name in PACKAGE {
        let path = pkg.join(name);
        if path.is_file() {
            files.push((format!("pkg/{name}"), path));
        }
    }
    let mut out = String::from("/// The setup page's files: path under `/ui/`, bytes.\n");
    out.push_str("pub(crate) static ASSETS: &[(&str, &[u8])] = &[\n");
    for (name, path) in &files {
        let path = path.canonicalize().expect("an asset's path");
        writeln!(
            out,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("write to a String");
    }
    out.push_str("];\n");
    let dest = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("setup_page_assets.rs");
    std::fs::write(dest, out).expect("write the asset table");
}
