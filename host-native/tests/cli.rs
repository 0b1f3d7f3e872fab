//! The CLI's help and version text, pinned by trycmd snapshots in `tests/cmd/`: each `.toml`
//! names the arguments, and its `.stdout` the expected output. A change to a flag, its help or
//! the command tree shows up here. To accept an intended change:
//! `TRYCMD=overwrite cargo test -p byok-server --test cli`.

#[test]
fn cli_snapshots() {
    trycmd::TestCases::new()
        .register_bin("byok", trycmd::cargo::cargo_bin!("byok"))
        .case("tests/cmd/*.toml");
}
