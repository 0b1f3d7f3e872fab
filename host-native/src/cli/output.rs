//! Human output: one summary line per object, or the server's JSON as is with `--json`.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use super::Client;

/// Prints `value` as JSON with `--json`, else the summary `human` makes of it.
pub(super) fn print(client: &Client, value: &Value, human: impl FnOnce(&Value) -> String) {
    if client.json() {
        line(value);
    } else {
        line(human(value));
    }
}

/// Prints an answer holding secrets (a data key, a lease, a new token) without copying them
/// into memory of ours that is freed unwiped, as a `serde_json::Value` or a growing `format!`
/// would: the answer is read in place (`T` borrows its strings from the caller's buffer, wiped
/// when dropped) and must be what byok sends, in every mode, or it is an error (exit 3), never a
/// line printed with exit 0; then `--json` prints the answer's own bytes, and otherwise `human`
/// writes its summary piece by piece ([`raw`]).
pub(super) fn print_secret<'a, T: serde::Deserialize<'a>>(
    client: &Client,
    answer: &'a [u8],
    path: &str,
    human: impl FnOnce(&T),
) -> Result<(), super::Failure> {
    let text = std::str::from_utf8(answer).map_err(|_| client.unusable(path))?;
    let parsed: T = serde_json::from_str(text).map_err(|_| client.unusable(path))?;
    if client.json() {
        raw(text.trim_end());
    } else {
        human(&parsed);
    }
    raw("\n");
    Ok(())
}

/// Whether a write to standard output found its reader gone (a non-streaming command).
static OUTPUT_LOST: AtomicBool = AtomicBool::new(false);

/// Whether this command streams rows until its reader goes (`audit read`, `audit tail`,
/// `job watch`): see [`line`].
static STREAMING: AtomicBool = AtomicBool::new(false);

/// Marks this command as one that streams rows: a reader gone ends it with exit 0.
pub(super) fn streaming() {
    STREAMING.store(true, Ordering::SeqCst);
}

/// Whether some output never reached its reader: the command then ends with exit 2 if it
/// would have succeeded (a verdict keeps its own code).
pub(super) fn lost() -> bool {
    OUTPUT_LOST.load(Ordering::SeqCst)
}

/// Writes one line to standard output. A reader that went away from a streaming command
/// (`byok audit read | head -1`, `byok audit tail --follow | grep -m1 revoke`) ends byok
/// quietly with exit 0, as ripgrep does: no one is left to read, and `println!` would panic
/// (exit 101) or a follow loop poll the server for ever. From any other command, the rest of
/// the output is dropped and the command ends with its own code, or 2 where it would have said
/// 0: a verdict (`audit verify`, `key validate`) piped to a reader gone is not a pass, and a
/// token shown once (`token claim`) that reached no one is a failure. Any other write error
/// ends it with exit 2, as a file output's does. Called where nothing is held that must be
/// cleaned up (no output file is open).
pub(super) fn line(text: impl std::fmt::Display) {
    raw(&format!("{text}\n"));
}

/// Writes `text` to standard output (a signed checkpoint as the server sent it), as [`line`],
/// with control characters escaped ([`shown`]).
pub(super) fn raw(text: &str) {
    use std::io::Write as _;
    if lost() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = write_shown(&mut out, text).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            if STREAMING.load(Ordering::SeqCst) {
                std::process::exit(0);
            }
            OUTPUT_LOST.store(true, Ordering::SeqCst);
            return;
        }
        eprintln!("error: cannot write output: {e}");
        std::process::exit(2);
    }
}

/// Whether `c` is shown escaped: a control character but newline and tab.
fn odd(c: char) -> bool {
    c.is_control() && c != '\n' && c != '\t'
}

/// Writes `text` to `out` with every control character but newline and tab escaped as JSON
/// escapes it (`\u001b`): names, messages and notes come from the server (or whoever answers
/// in its place), and an escape sequence among them must be shown, not obeyed: it could
/// redraw a line of `audit verify`'s verdict, or set the clipboard. Written piece by piece,
/// with no copy (secrets pass here); inside a JSON string the escape is JSON still (serde
/// leaves DEL and C1 characters as they are).
fn write_shown(out: &mut impl std::io::Write, text: &str) -> std::io::Result<()> {
    let mut from = 0;
    for (i, c) in text.char_indices().filter(|(_, c)| odd(*c)) {
        out.write_all(text.get(from..i).unwrap_or_default().as_bytes())?;
        write!(out, "\\u{:04x}", u32::from(c))?;
        from = i + c.len_utf8();
    }
    out.write_all(text.get(from..).unwrap_or_default().as_bytes())
}

/// `text` as [`write_shown`] writes it, for a message on standard error; borrowed when it
/// has nothing to escape.
pub(crate) fn shown(text: &str) -> Cow<'_, str> {
    if !text.chars().any(odd) {
        return Cow::Borrowed(text);
    }
    let mut out = Vec::with_capacity(text.len() + 16);
    let _ = write_shown(&mut out, text);
    Cow::Owned(String::from_utf8(out).unwrap_or_default())
}

/// The string field `k` of `v`, or "" when absent.
pub(super) fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// One scope: id, name, effective state (and which ancestor set it), key version.
pub(super) fn scope_line(v: &Value) -> String {
    let by = match v.get("effective_by").and_then(Value::as_str) {
        Some(b) if b != s(v, "id") => format!(" (by {b})"),
        _ => String::new(),
    };
    format!(
        "{}  {}  {}{}  key v{}",
        s(v, "id"),
        s(v, "name"),
        s(v, "effective"),
        by,
        v.get("key_version")
            .and_then(Value::as_u64)
            .map_or("-".into(), |n| n.to_string())
    )
}

/// One key: id, name, type, state, default, health, ARN.
pub(super) fn key_line(k: &Value) -> String {
    format!(
        "{:<8} {:<16} {:<8} {:<9}{} {}{}",
        s(k, "id"),
        s(k, "name"),
        s(k, "type"),
        s(k, "state"),
        if k.get("default").and_then(Value::as_bool) == Some(true) {
            " default"
        } else {
            ""
        },
        k.get("health")
            .and_then(Value::as_str)
            .map(|h| format!("health {h}"))
            .unwrap_or_default(),
        k.get("key")
            .and_then(Value::as_str)
            .map(|a| format!("  {a}"))
            .unwrap_or_default(),
    )
}

/// An org's keys, then whether the vendor can decrypt.
pub(super) fn keys_lines(v: &Value) -> String {
    let keys = v["keys"]
        .as_array()
        .map(|ks| ks.iter().map(key_line).collect::<Vec<_>>().join("\n"))
        .unwrap_or_default();
    let vendor = if v["vendor_can_decrypt"] == true {
        "vendor can decrypt: yes (the managed key holds a copy of the root)"
    } else {
        "vendor can decrypt: no (BYOK: every unwrap goes through your KMS)"
    };
    format!("{keys}\n{vendor}")
}

/// A validation report: one line per step, and the fix under a failed one.
pub(super) fn report_lines(steps: &Value) -> String {
    steps
        .as_array()
        .map(|st| {
            st.iter()
                .map(|x| {
                    let mut line = format!(
                        "{:<8} {:<18} {}",
                        s(x, "outcome"),
                        s(x, "step"),
                        s(x, "detail")
                    );
                    if let Some(fix) = x.get("fix").and_then(Value::as_str) {
                        line.push_str(&format!("\n         fix: {fix}"));
                    }
                    line
                })
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}
