//! `byok audit checkpoint | prove | verify --checkpoint | verify-receipt | tail`: the audit log
//! as a transparency log, checked on the customer's side.
//!
//! Everything here verifies with core's `audit_log` against a verifier key the customer pinned
//! (`--verifier-key`, or `BYOK_VERIFIER_KEY`); without one, the server's is used and a warning
//! says so, since a server that lies about its log could lie about its key too.

use std::path::Path;

use byok_core::audit_log::checkpoint::{self, VerifiedCheckpoint, WitnessKey};
use byok_core::audit_log::proof::{ConsistencyProof, InclusionProof};
use byok_core::audit_log::receipt::{self, Entry, Receipt};
use byok_core::audit_log::tree::MemoryTree;
use byok_core::audit_log::{AuditLogError, Hash};
use serde_json::{Value, json};

use super::output::print;
use super::{Client, Failure};

/// Exit code when something does not verify.
const NOT_VERIFIED: u8 = 4;

fn bad(what: impl std::fmt::Display) -> Failure {
    Failure::new(NOT_VERIFIED, what.to_string())
}

fn read_text(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))
}

/// A checkpoint the customer kept, from `path`: a signed note as `byok audit checkpoint`
/// prints it, or a withdrawal receipt (alone, or in the whole answer that carried it). A
/// receipt's own proof is checked first against `vkey`, and its checkpoint is then the one
/// kept: the log found to extend it still holds the withdrawal, as it was signed.
fn kept_checkpoint(path: &Path, vkey: &str) -> Result<String, Failure> {
    let text = read_text(path)?;
    if !text.trim_start().starts_with('{') {
        return Ok(text);
    }
    let r = receipt_in(&text)?;
    receipt::verify(&r, vkey).map_err(|e| bad(format!("the receipt does not verify: {e}")))?;
    Ok(r.checkpoint)
}

/// The receipt in `text`: a receipt, or an answer that carries one under `receipt`.
fn receipt_in(text: &str) -> Result<Receipt, Failure> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("not a receipt (JSON): {e}")))?;
    let doc = value.get("receipt").cloned().unwrap_or(value);
    serde_json::from_value(doc).map_err(|e| bad(format!("not a receipt: {e}")))
}

/// The verifier key: given (`KEY` or `@FILE`), else the server's, with a warning.
pub(super) async fn verifier_key(client: &Client, given: Option<&str>) -> Result<String, Failure> {
    match given {
        Some(k) => given_key(k),
        None => {
            let v = client.get("/v1/audit/verifier-key").await?;
            let k = v
                .get("verifier_key")
                .and_then(Value::as_str)
                .ok_or_else(|| Failure::new(1, "the server published no verifier key"))?;
            eprintln!(
                "warning: checking against the verifier key the server gives now ({}); pin it with --verifier-key",
                super::output::shown(k)
            );
            Ok(k.to_owned())
        }
    }
}

/// A verifier key given on the command line: the key itself, or `@FILE` holding it.
fn given_key(k: &str) -> Result<String, Failure> {
    match k.strip_prefix('@') {
        Some(path) => Ok(read_text(Path::new(path))?.trim().to_owned()),
        None => Ok(k.trim().to_owned()),
    }
}

fn checked(note: &str, vkey: &str, what: &str) -> Result<VerifiedCheckpoint, Failure> {
    checkpoint::verify(note, vkey).map_err(|e| bad(format!("{what}: {e}")))
}

/// [`checked`], and of org `org`'s log: another org's checkpoint verifies with the same key.
fn checked_for(
    note: &str,
    vkey: &str,
    org: &str,
    what: &str,
) -> Result<VerifiedCheckpoint, Failure> {
    let cp = checked(note, vkey, what)?;
    if cp.org.to_string() != org {
        return Err(bad(format!("{what} is for org {}, not {org}", cp.org)));
    }
    Ok(cp)
}

/// `byok audit checkpoint`: the newest signed checkpoint, as the server signs it.
pub(super) async fn fetch_checkpoint(client: &Client, org: &str) -> Result<String, Failure> {
    client
        .get_text(&format!("/v1/orgs/{org}/audit/checkpoint"))
        .await
}

/// `byok audit prove SEQ`: row `seq` is in the log a (kept or newest) checkpoint signs.
pub(super) async fn prove(
    client: &Client,
    org: &str,
    seq: u64,
    kept: Option<&Path>,
    vkey: Option<&str>,
) -> Result<(), Failure> {
    let pinned = vkey.is_some();
    let vkey = verifier_key(client, vkey).await?;
    let note = match kept {
        Some(p) => kept_checkpoint(p, &vkey)?,
        None => fetch_checkpoint(client, org).await?,
    };
    let cp = checked_for(&note, &vkey, org, "the checkpoint")?;
    let answer = client
        .get(&format!(
            "/v1/orgs/{org}/audit/proof/inclusion?seq={seq}&size={}",
            cp.size
        ))
        .await?;
    let malformed =
        |e: serde_json::Error| bad(format!("the server's inclusion proof is malformed: {e}"));
    let proof: InclusionProof =
        serde_json::from_value(answer.get("proof").cloned().unwrap_or_default())
            .map_err(malformed)?;
    let entry: Entry = serde_json::from_value(answer.get("entry").cloned().unwrap_or_default())
        .map_err(malformed)?;
    if entry.seq != seq || proof.index.checked_add(1) != Some(seq) {
        return Err(bad(format!(
            "the server answered for another row than {seq}"
        )));
    }
    let leaf = entry.leaf_hash().map_err(bad)?;
    proof.check(cp.size, &cp.root, leaf).map_err(|e| {
        bad(format!(
            "row {seq} as the server shows it is NOT in the checkpoint of size {}: {e}",
            cp.size
        ))
    })?;
    let out = json!({ "ok": true, "seq": seq, "size": cp.size, "root": cp.root.to_string(), "event": entry.event, "verifier_key_pinned": pinned });
    print(client, &out, |_| {
        format!(
            "row {seq} is in the log of size {} (root {})",
            cp.size, cp.root
        )
    });
    Ok(())
}

/// Rows `after+1 ..` (at most `limit`), as leaves.
async fn rows(client: &Client, org: &str, after: u64, limit: u64) -> Result<Vec<Row>, Failure> {
    let mut out = Vec::new();
    let mut after = after;
    while (out.len() as u64) < limit {
        let page = (limit - out.len() as u64).min(1000);
        let v = client
            .get(&format!("/v1/orgs/{org}/audit?after={after}&limit={page}"))
            .await?;
        let batch = super::audit::rows_of(client, &v, &format!("/v1/orgs/{org}/audit"))?;
        let n = batch.len() as u64;
        for r in batch {
            out.push(Row::from_value(&r).map_err(bad)?);
        }
        if n < page {
            break;
        }
        after = out.last().map_or(after, |r| r.entry.seq);
    }
    Ok(out)
}

/// A row as downloaded: the leaf's contents and the server's stored leaf hash.
struct Row {
    entry: Entry,
    stored_leaf: Option<String>,
}

impl Row {
    fn from_value(v: &Value) -> Result<Self, String> {
        let seq = v
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or("a row without seq")?;
        let at = v
            .get("at")
            .and_then(Value::as_i64)
            .ok_or("a row without at")?;
        let event = v.get("event").cloned().ok_or("a row without event")?;
        Ok(Self {
            entry: Entry { seq, at, event },
            stored_leaf: v
                .get("leaf_hash")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    fn leaf_hash(&self) -> Result<Hash, AuditLogError> {
        self.entry.leaf_hash()
    }
}

/// What `verify --checkpoint` found: the first bad row, exactly when the rows show it, or
/// the range it lies in when rows and tree were rewritten together.
struct Finding {
    first_bad: Option<u64>,
    first_bad_at_most: Option<u64>,
    reason: String,
}

/// The witnesses a customer trusts (`--witness-key`), and how many must have cosigned.
pub(super) struct Witnesses {
    keys: Vec<WitnessKey>,
    min: usize,
}

impl Witnesses {
    /// From `--witness-key` (each the key or `@FILE`) and `--min-cosignatures` (default: all).
    pub(super) fn parse(given: &[String], min: Option<u64>) -> Result<Self, Failure> {
        let mut keys: Vec<WitnessKey> = Vec::with_capacity(given.len());
        for g in given {
            let k = WitnessKey::parse(&given_key(g)?)
                .map_err(|e| Failure::usage(format!("--witness-key {g:?}: {e}")))?;
            if keys.iter().any(|o| o.name() == k.name()) {
                return Err(Failure::usage(format!(
                    "--witness-key names witness {} twice: one key per witness",
                    k.name()
                )));
            }
            keys.push(k);
        }
        let min = min.map_or(keys.len(), |m| usize::try_from(m).unwrap_or(usize::MAX));
        if min > keys.len() {
            return Err(Failure::usage(format!(
                "--min-cosignatures {min} is more than the {} witness key(s) given",
                keys.len()
            )));
        }
        Ok(Self { keys, min })
    }
}

/// A witness's newest cosignature on a checkpoint these rows give.
struct Cosigned {
    name: String,
    /// The checkpoint's size and the cosignature's time (seconds since the epoch).
    newest: Option<(u64, u64)>,
}

impl Cosigned {
    /// "NAME up to size N", or "NAME nothing".
    fn summary(&self) -> String {
        match self.newest {
            Some((s, _)) => format!("{} up to size {s}", self.name),
            None => format!("{} nothing", self.name),
        }
    }
}

/// For each witness, the largest of `notes` (each a checkpoint byok signed, whose root the rows
/// give) it cosigned. A line in the witness's name that does not verify fails the check: it
/// was forged or altered.
fn cosigned(witnesses: &Witnesses, notes: &[Signed]) -> Result<Vec<Cosigned>, Failure> {
    let mut out = Vec::with_capacity(witnesses.keys.len());
    for w in &witnesses.keys {
        let mut newest: Option<(u64, u64)> = None;
        for Signed { size, note, .. } in notes {
            let found = w.cosignature_in(note).map_err(|e| {
                bad(format!(
                    "witness {}'s cosignature on the checkpoint of size {size} does not verify: {e}",
                    w.name()
                ))
            })?;
            if let Some(ts) = found
                && newest.is_none_or(|(s, _)| *size > s)
            {
                newest = Some((*size, ts));
            }
        }
        out.push(Cosigned {
            name: w.name().to_owned(),
            newest,
        });
    }
    Ok(out)
}

/// Whether enough witnesses cosigned a checkpoint covering the kept one (`kept_size`): else the
/// reason, naming what each witness cosigned.
fn witnesses_agree(witnesses: &Witnesses, found: &[Cosigned], kept_size: u64) -> Option<String> {
    let covering = found
        .iter()
        .filter(|c| c.newest.is_some_and(|(s, _)| s >= kept_size))
        .count();
    if covering >= witnesses.min {
        return None;
    }
    let each: Vec<String> = found.iter().map(Cosigned::summary).collect();
    Some(format!(
        "{covering} of the {} witness(es) you require cosigned a checkpoint covering yours (size {kept_size}): {}; the log you see may not be the one they saw",
        witnesses.min,
        each.join(", ")
    ))
}

/// `byok audit verify --checkpoint FILE`: the log now extends the checkpoint the customer kept,
/// and (with witnesses) they cosigned it.
pub(super) async fn verify(
    client: &Client,
    org: &str,
    kept_path: &Path,
    vkey: Option<&str>,
    witnesses: &Witnesses,
) -> Result<(), Failure> {
    let pinned = vkey.is_some();
    let vkey = verifier_key(client, vkey).await?;
    let kept_note = kept_checkpoint(kept_path, &vkey)?;
    let kept = checked_for(&kept_note, &vkey, org, "your checkpoint")?;
    // The server's newest checkpoint, signed now if the log grew. A server that finds its
    // storage contradicting what it signed refuses to sign (`500 internal`): the rows are
    // then judged by the largest checkpoint it lists, or yours if larger, so that a rewrite
    // still gets a verdict (exit 4). Rows that check out then are no pass: the server said
    // something is wrong past them (exit 1, saying so).
    let refused = match fetch_checkpoint(client, org).await {
        Ok(note) => Err(note),
        Err(f) if f.status == Some(500) && f.api == Some(byok_core::ApiCode::Internal) => Ok(f),
        Err(f) => return Err(f),
    };
    let fetched = refused.as_ref().err().cloned();
    // Every checkpoint byok signed for this org: the server's list, yours and its newest.
    let mut signed = signed_checkpoints(client, org, &vkey).await?;
    // The largest of them is the newest: the list is read after the newest was fetched, and
    // one signed in between (the periodic signer, a witness's fetch) is larger. Judged as
    // anything smaller, the rows read up to it would not reach it, and a healthy log would
    // look rewritten.
    let mut newest_note = match fetched {
        Some(note) => {
            let newest = checked_for(&note, &vkey, org, "the server's checkpoint")?;
            signed.push(Signed::new(&newest, note.clone()));
            note
        }
        None => String::new(),
    };
    if let Some(largest) = signed.iter().max_by_key(|s| s.size) {
        newest_note.clone_from(&largest.note);
    }
    if refused.is_ok()
        && (newest_note.is_empty()
            || kept.size > checked(&newest_note, &vkey, "a listed checkpoint")?.size)
    {
        newest_note.clone_from(&kept_note);
    }
    if newest_note.is_empty() {
        return Err(Failure::new(
            1,
            "the server refused to sign a checkpoint and lists none it signed: nothing to check the rows against",
        ));
    }
    let newest = checked_for(&newest_note, &vkey, org, "the server's checkpoint")?;
    signed.push(Signed::new(&kept, kept_note));
    let mut finding = examine(client, org, &kept, &newest, &signed).await?;
    if let (None, Ok(refusal)) = (&finding, refused) {
        return Err(Failure::new(
            1,
            format!(
                "the server refuses to sign a checkpoint ({}): it does so when it finds its rows, tree or checkpoints changed since it signed (its log says which), or when its storage fails; the rows up to {} match every checkpoint it lists and yours, but rows after them were not checked",
                refusal.message, newest.size
            ),
        ));
    }
    // Only once the rows give every checkpoint byok signed: a cosigned one then is a state of
    // these rows.
    let mut found = Vec::new();
    if finding.is_none() && !witnesses.keys.is_empty() {
        found = cosigned(witnesses, &signed)?;
        finding = witnesses_agree(witnesses, &found, kept.size).map(|reason| Finding {
            first_bad: None,
            first_bad_at_most: None,
            reason,
        });
    }
    let report: Vec<Value> = found
        .iter()
        .map(|c| json!({ "name": c.name, "cosigned_size": c.newest.map(|n| n.0), "cosigned_at": c.newest.map(|n| n.1) }))
        .collect();
    let mut out = match &finding {
        None => {
            json!({ "ok": true, "kept_size": kept.size, "size": newest.size, "root": newest.root.to_string(), "verifier_key_pinned": pinned })
        }
        Some(f) => {
            json!({ "ok": false, "kept_size": kept.size, "size": newest.size, "first_bad": f.first_bad, "first_bad_at_most": f.first_bad_at_most, "reason": f.reason, "verifier_key_pinned": pinned })
        }
    };
    if !witnesses.keys.is_empty() {
        out["witnesses"] = Value::Array(report);
        out["min_cosignatures"] = json!(witnesses.min);
    }
    let cosigned_by = found
        .iter()
        .filter(|c| c.newest.is_some())
        .map(Cosigned::summary)
        .collect::<Vec<_>>()
        .join(", ");
    print(client, &out, |_| match &finding {
        None if !witnesses.keys.is_empty() => format!(
            "the log extends your checkpoint: {} row(s) then, {} now, every row checked; cosigned by {cosigned_by}",
            kept.size, newest.size
        ),
        None => format!(
            "the log extends your checkpoint: {} row(s) then, {} now, every row checked",
            kept.size, newest.size
        ),
        Some(f) => format!(
            "the log does NOT extend your checkpoint{}: {}",
            f.first_bad
                .map(|i| format!(" (first bad row: {i})"))
                .unwrap_or_default(),
            f.reason
        ),
    });
    match finding {
        None => Ok(()),
        Some(f) => Err(bad(f.reason)),
    }
}

async fn examine(
    client: &Client,
    org: &str,
    kept: &VerifiedCheckpoint,
    newest: &VerifiedCheckpoint,
    signed: &[Signed],
) -> Result<Option<Finding>, Failure> {
    if newest.size < kept.size {
        return Ok(Some(Finding {
            first_bad: Some(newest.size + 1),
            first_bad_at_most: None,
            reason: format!(
                "the log has {} row(s) but your checkpoint covers {}: rows from {} on were cut",
                newest.size,
                kept.size,
                newest.size + 1
            ),
        }));
    }
    let rows = rows(client, org, 0, newest.size).await?;
    // Rows in order, each matching the leaf the server's tree holds for it.
    let mut tree = MemoryTree::new();
    for (i, row) in rows.iter().enumerate() {
        let want = i as u64 + 1;
        if row.entry.seq != want {
            return Ok(Some(Finding {
                first_bad: Some(want),
                first_bad_at_most: None,
                reason: format!(
                    "row {want} is missing (found {} in its place)",
                    row.entry.seq
                ),
            }));
        }
        let leaf = row.leaf_hash().map_err(bad)?;
        if row
            .stored_leaf
            .as_deref()
            .is_some_and(|s| s != leaf.to_string())
        {
            return Ok(Some(Finding {
                first_bad: Some(want),
                first_bad_at_most: None,
                reason: format!(
                    "row {want} was changed after it was logged: its contents do not hash to the leaf the tree holds"
                ),
            }));
        }
        tree.push(leaf).map_err(bad)?;
    }
    let n = tree.len();
    if n < kept.size.max(newest.size) {
        let covers = kept.size.max(newest.size);
        let whose = if kept.size >= newest.size {
            "your checkpoint"
        } else {
            "the server's newest checkpoint"
        };
        return Ok(Some(Finding {
            first_bad: Some(n + 1),
            first_bad_at_most: None,
            reason: format!(
                "the server lists {n} row(s) but {whose} covers {covers}: rows from {} on are missing",
                n + 1
            ),
        }));
    }
    // Every checkpoint byok signed for this org must be a root of these rows: yours, the
    // newest, and each the server still lists (all in `signed`). A rewrite after a checkpoint
    // was signed contradicts it even when the checkpoint you kept is older than the rewrite.
    let mut signed: Vec<(u64, Hash)> = signed.iter().map(|s| (s.size, s.root)).collect();
    signed.sort_by_key(|(size, _)| *size);
    let matches = |(size, root): &(u64, Hash)| tree.root(*size).ok() == Some(*root);
    if let Some(contradicted) = signed.iter().find(|c| !matches(c)) {
        // The largest signed size below it that the rows still give.
        let good = signed
            .iter()
            .filter(|c| c.0 < contradicted.0 && matches(c))
            .map(|c| c.0)
            .max()
            .unwrap_or(0);
        return Ok(Some(Finding {
            first_bad: Some(good + 1),
            first_bad_at_most: Some(contradicted.0),
            reason: format!(
                "rows and tree were rewritten after byok signed them: the first {good} row(s) match every checkpoint byok signed over them, and a row from {} to {} differs from what was signed",
                good + 1,
                contradicted.0
            ),
        }));
    }
    // The rows give every signed root; the server's own proof must say so too.
    let proof: ConsistencyProof = serde_json::from_value(
        client
            .get(&format!(
                "/v1/orgs/{org}/audit/proof/consistency?from={}&to={}",
                kept.size, newest.size
            ))
            .await?,
    )
    .map_err(|e| bad(format!("the server's consistency proof is malformed: {e}")))?;
    if let Err(e) = proof.check(kept.size, &kept.root, newest.size, &newest.root) {
        return Ok(Some(Finding {
            first_bad: None,
            first_bad_at_most: None,
            reason: format!(
                "the rows extend your checkpoint, but the server's consistency proof from it to its newest does not verify ({e}): its proofs cannot be trusted"
            ),
        }));
    }
    Ok(None)
}

/// A checkpoint byok signed (its signature checked), with its note as served (witnesses'
/// lines included).
struct Signed {
    size: u64,
    root: Hash,
    note: String,
}

impl Signed {
    fn new(cp: &VerifiedCheckpoint, note: String) -> Self {
        Self {
            size: cp.size,
            root: cp.root,
            note,
        }
    }
}

/// Every checkpoint the server lists for org `org` that verifies with the log's key: a
/// rewriter cannot sign without the key, so each is what byok saw at that size.
async fn signed_checkpoints(
    client: &Client,
    org: &str,
    vkey: &str,
) -> Result<Vec<Signed>, Failure> {
    let mut roots = Vec::new();
    let mut after = 0u64;
    loop {
        let list = client
            .get(&format!(
                "/v1/orgs/{org}/audit/checkpoints?after={after}&limit=1000"
            ))
            .await?;
        let list =
            super::audit::rows_of(client, &list, &format!("/v1/orgs/{org}/audit/checkpoints"))?;
        for c in &list {
            let note = c.get("note").and_then(Value::as_str).unwrap_or_default();
            if let Ok(v) = checkpoint::verify(note, vkey)
                && v.org.to_string() == org
            {
                roots.push(Signed::new(&v, note.to_owned()));
            }
        }
        match list
            .last()
            .and_then(|c| c.get("size"))
            .and_then(Value::as_u64)
        {
            Some(s) if list.len() == 1000 && s > after => after = s,
            _ => break,
        }
    }
    Ok(roots)
}

/// `byok audit verify-receipt FILE`: offline, against the pinned verifier key, and of org
/// `org` if given (one log key signs every org's receipts: a valid receipt of another org says
/// nothing about yours).
pub(super) fn verify_receipt(
    client: &Client,
    path: &Path,
    vkey: &str,
    org: Option<&str>,
) -> Result<(), Failure> {
    // A whole withdrawal answer (scope, keys or token) carries its receipt under `receipt`.
    let r = receipt_in(&read_text(path)?)?;
    let vkey = given_key(vkey)?;
    let v =
        receipt::verify(&r, &vkey).map_err(|e| bad(format!("the receipt does not verify: {e}")))?;
    if let Some(org) = org
        && !v
            .checkpoint
            .org
            .to_string()
            .eq_ignore_ascii_case(org.trim())
    {
        return Err(bad(format!(
            "the receipt is of org {}, not of org {}",
            v.checkpoint.org,
            org.trim()
        )));
    }
    let out = json!({
        "ok": true,
        "org": v.checkpoint.org.to_string(),
        "seq": v.entry.seq,
        "action": v.action,
        "subject": v.entry.event.get("subject"),
        "at": v.entry.at,
        "access_ends_at": v.access_ends_at,
        "checkpoint_size": v.checkpoint.size,
    });
    print(client, &out, |_| {
        format!(
            "receipt verified: {} of {} in org {}, logged as row {} (signed in the checkpoint of size {}); access ended by {} ms since the epoch",
            v.action,
            v.entry
                .event
                .get("subject")
                .map(Value::to_string)
                .unwrap_or_default(),
            v.checkpoint.org,
            v.entry.seq,
            v.checkpoint.size,
            v.access_ends_at
        )
    });
    Ok(())
}
