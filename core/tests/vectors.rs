//! Every vector in `vectors/*.json`, against both AEAD backends. The same files run under wasm
//! (`host-wasm/tests/vectors.rs`, with the RustCrypto backend, the one that builds for wasm), so
//! native and wasm agree byte for byte.

use byok_core::crypto::backend::{AwsLc, RustCrypto};
use byok_core::dev::run_vectors;

const FILES: [(&str, &str); 5] = [
    ("single", include_str!("../../vectors/single.json")),
    ("negative", include_str!("../../vectors/negative.json")),
    ("framed", include_str!("../../vectors/framed.json")),
    ("datakey", include_str!("../../vectors/datakey.json")),
    ("armor", include_str!("../../vectors/armor.json")),
];

#[test]
fn vectors_rustcrypto() {
    for (name, json) in FILES {
        let n = run_vectors::<RustCrypto>(json).unwrap_or_else(|e| panic!("{name}:\n{e}"));
        assert!(n > 0, "{name}: no vectors");
    }
}

#[test]
fn vectors_aws_lc() {
    for (name, json) in FILES {
        let n = run_vectors::<AwsLc>(json).unwrap_or_else(|e| panic!("{name}:\n{e}"));
        assert!(n > 0, "{name}: no vectors");
    }
}

/// The runner must be able to fail: a vector whose expectation is wrong is reported.
#[test]
fn runner_reports_a_wrong_expectation() {
    let json = include_str!("../../vectors/negative.json").replacen(
        "\"expect\": \"decrypt\"",
        "\"expect\": \"ok\"",
        1,
    );
    assert!(run_vectors::<RustCrypto>(&json).is_err());
    let json =
        include_str!("../../vectors/single.json").replacen("\"rng\": \"", "\"rng\": \"00", 1);
    let err = run_vectors::<RustCrypto>(&json).unwrap_err();
    assert!(
        err.contains("re-encryption") || err.contains("fewer"),
        "{err}"
    );
}

/// The files together cover what the format issues ask for.
#[test]
fn coverage_of_the_vector_set() {
    let all: String = FILES.iter().map(|(_, j)| *j).collect();
    for needle in [
        "\"len_0\"",
        "\"f256_len_256\"",
        "\"f256_len_257\"",
        "\"f256_len_255\"",
        "context_large",
        "context_empty",
        "frames_swapped",
        "final_frame_dropped",
        "frame_duplicated",
        "frame_spliced_from_other_message",
        "commitment_flipped",
        "version_2",
        // Issue #12: vectors that a reader skipping the commitment, the context sort or the
        // armor would fail, and the precedence and framing classes the spec settles.
        "commitment_wrong_tag_valid",
        "context_unsorted_utf8_not_utf16_order",
        "context_not_normalised",
        "context_duplicate_key",
        "\"armor_single_len_0\"",
        "\"armor_datakey\"",
        "\"armor_framed\"",
        "truncated_6_bytes_version_2",
        "truncated_7_bytes_mode_4",
        "other_scope_key_and_body_shorter_than_tag",
        "appended_16_bytes_after_whole_frames",
        "final_frame_len_1_after_full_frames",
        "wrapped_extended_other_scope_key",
    ] {
        assert!(all.contains(needle), "missing vector {needle}");
    }
}
