//! The CLI's help and version text, pinned by trycmd snapshots in `tests/cmd/`: each `.toml`
//! names the arguments, and its `.stdout` the expected output. A change to a flag, its help or
//! the command tree shows up here. To accept an intended change:
//! `TRYCMD=overwrite cargo test -p byok-server --test cli`. Also: README's first contact says
//! how to get the binary.

#[test]
fn cli_snapshots() {
    trycmd::TestCases::new()
        .register_bin("byok", trycmd::cargo::cargo_bin!("byok"))
        .case("tests/cmd/*.toml");
}

/// README's first contact types `byok ...`: it must say how `byok` gets on the PATH, with the
/// crate directory and binary name as they are (a rename shows up here).
#[test]
fn the_readme_says_how_to_put_byok_on_the_path() {
    let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(crate_dir.join("../README.md")).unwrap();
    let top = readme.split("\n## ").next().unwrap();
    let dir = crate_dir.file_name().unwrap().to_str().unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_byok"));
    let bin = bin.file_stem().unwrap().to_str().unwrap();
    for told in [
        format!("`cargo install --path {dir} --locked`"),
        format!("`target/release/{bin}`"),
        format!("`$CARGO_TARGET_DIR/release/{bin}`"),
    ] {
        assert!(top.contains(&told), "README's opening does not say {told}");
    }
}
