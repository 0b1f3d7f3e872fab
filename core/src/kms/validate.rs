//! Key setup validation, for any provider, as a sans-IO plan: the same code runs on the server
//! and (as wasm) in the admin's browser.
//!
//! ```text
//! parse -> region -> describe -> wrap probe -> unwrap probe -> compare
//! ```
//!
//! The host asks [`Validation::next`] what to do, performs the KMS call it names (building the
//! request with the [`Provider`]), and feeds the answer back. Every step ends pass, fail (with
//! the one fix: for an `AccessDenied`, the exact statement to add), or skipped (naming the step
//! that stopped it). The probe is a random 32-byte value, wrapped and unwrapped with the org's
//! encryption context, like a real org root key.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;

use crate::kms::error::{KmsError, KmsErrorKind};
use crate::kms::provider::{KeyState, ORG_CLAIM, Op, ParsedKey, Provider, Unusable};
use crate::secret::SecretBytes;

pub use crate::validate::{Outcome, Step};

/// What the host must do next.
#[derive(Debug)]
pub enum Next<'a> {
    /// Describe the key; report with [`Validation::described`].
    Describe(&'a str),
    /// Wrap `probe` under the key; report with [`Validation::wrapped`].
    Wrap(&'a str, &'a SecretBytes),
    /// Unwrap `blob`; report with [`Validation::unwrapped`].
    Unwrap(&'a str, &'a [u8]),
    /// Finished: read [`Validation::report`].
    Done,
}

/// A validation in progress.
pub struct Validation {
    provider: &'static dyn Provider,
    key: Option<ParsedKey>,
    described: Option<String>,
    probe: SecretBytes,
    blob: Option<Vec<u8>>,
    report: Vec<(Step, Outcome)>,
    principal: String,
    org: String,
    /// byok reaches the key as a principal every org shares: the key must name this org.
    shared: bool,
}

impl Validation {
    /// Starts validating `identifier`, a key of `provider`, for org `org`, whose allowed
    /// locations are `regions` (empty: any), with byok calling as `principal`; `shared` when
    /// that principal is one every org shares ([`Provider::shared_principal`]): the key's
    /// description must then name `org` ([`KeyState::org_claim`]). Parse and region run at
    /// once.
    pub fn start(
        provider: &'static dyn Provider,
        identifier: &str,
        regions: &[&str],
        principal: &str,
        org: &str,
        shared: bool,
        rng: &mut impl CryptoRng,
    ) -> Self {
        let mut v = Self {
            provider,
            key: None,
            described: None,
            probe: SecretBytes::random(rng),
            blob: None,
            report: Vec::new(),
            principal: principal.into(),
            org: org.into(),
            shared,
        };
        match provider.parse_key(identifier) {
            Ok(key) => {
                v.report
                    .push((Step::Parse, Outcome::Pass(key.summary.clone())));
                if regions.is_empty() || regions.contains(&key.location.as_str()) {
                    v.report.push((
                        Step::Region,
                        Outcome::Pass(format!("{} is allowed", key.location)),
                    ));
                    v.key = Some(key);
                } else {
                    let problem = format!(
                        "the key is in {}, which this organization does not allow",
                        key.location
                    );
                    let fix = format!("use a key in one of: {}", regions.join(", "));
                    v.report
                        .push((Step::Region, Outcome::Fail { problem, fix }));
                    v.skip_rest(Step::Region);
                }
            }
            Err(e) => {
                v.report.push((
                    Step::Parse,
                    Outcome::Fail {
                        problem: e.to_string(),
                        fix: e.expected.into(),
                    },
                ));
                v.skip_rest(Step::Parse);
            }
        }
        v
    }

    fn skip_rest(&mut self, because: Step) {
        for s in [
            Step::Region,
            Step::Describe,
            Step::Wrap,
            Step::Unwrap,
            Step::Compare,
        ] {
            if !self.report.iter().any(|(done, _)| *done == s) {
                self.report.push((s, Outcome::Skipped(because)));
            }
        }
    }

    fn last(&self) -> Option<Step> {
        self.report.last().map(|(s, _)| *s)
    }

    /// What to do next.
    pub fn next(&self) -> Next<'_> {
        let Some(key) = &self.key else {
            return Next::Done;
        };
        let arn = key.key.as_str();
        match (self.last(), &self.blob) {
            (Some(Step::Region), _) => Next::Describe(arn),
            (Some(Step::Describe), _) if self.passed(Step::Describe) => {
                Next::Wrap(arn, &self.probe)
            }
            (Some(Step::Wrap), Some(blob)) => Next::Unwrap(arn, blob),
            _ => Next::Done,
        }
    }

    fn passed(&self, step: Step) -> bool {
        self.report
            .iter()
            .any(|(s, o)| *s == step && matches!(o, Outcome::Pass(_)))
    }

    /// The parsed key, once the identifier parsed and its location is allowed.
    pub fn key(&self) -> Option<&ParsedKey> {
        self.key.as_ref()
    }

    fn fail(&mut self, step: Step, e: &KmsError, op: Op) {
        let fix = match (e.kind, &self.key) {
            (KmsErrorKind::AccessDenied, Some(key)) => format!(
                "{} {}",
                self.provider.fix(e.kind),
                self.provider
                    .missing_grant(op, &key.key, &self.principal, &self.org)
            ),
            _ => self.provider.fix(e.kind),
        };
        self.report.push((
            step,
            Outcome::Fail {
                problem: e.to_string(),
                fix,
            },
        ));
        self.skip_rest(step);
    }

    /// The answer to [`Next::Describe`]: the key usable, or why not, or the error.
    pub fn described(&mut self, answer: Result<KeyState, KmsError>) {
        if self.last() != Some(Step::Region) {
            return;
        }
        match answer {
            Ok(state) => {
                self.described = Some(state.key.clone());
                let claim = self.unclaimed(&state);
                let unusable = state.unusable.or(claim);
                match unusable {
                    None => self
                        .report
                        .push((Step::Describe, Outcome::Pass(state.detail))),
                    Some(u) => {
                        self.report.push((
                            Step::Describe,
                            Outcome::Fail {
                                problem: u.problem,
                                fix: u.fix,
                            },
                        ));
                        self.skip_rest(Step::Describe);
                    }
                }
            }
            Err(e) => self.fail(Step::Describe, &e, Op::Describe),
        }
    }

    /// Why a key byok reaches as a shared principal may not be attached to this org: it does
    /// not name this org ([`KeyState::org_claim`]). Not a withdrawal (the class is `Malformed`:
    /// the key's setup, not its state): nothing is evicted for it.
    fn unclaimed(&self, state: &KeyState) -> Option<Unusable> {
        if !self.shared || state.org_claim.as_deref() == Some(self.org.as_str()) {
            return None;
        }
        let problem = match &state.org_claim {
            // The value is the KMS's text: not repeated, only said to differ.
            Some(_) => format!(
                "the key's {ORG_CLAIM} label or tag names another org, not this one ({}); byok reaches it as the vendor's own principal, which every org shares, so only the org the key names may attach it",
                self.org
            ),
            None => format!(
                "the key has no {ORG_CLAIM} label or tag naming this org ({}); byok reaches it as the vendor's own principal, which every org shares, so the key's owner must name the one org that may attach it",
                self.org
            ),
        };
        Some(Unusable {
            kind: KmsErrorKind::Malformed,
            problem,
            fix: self.provider.claim_command(&state.key, &self.org),
        })
    }

    /// The key as the KMS described it (an AWS alias resolved to its key), once described: what
    /// a host stores, so that re-pointing the alias later does not orphan the key's copies.
    pub fn described_key(&self) -> Option<&str> {
        self.described.as_deref()
    }

    /// The answer to [`Next::Wrap`].
    pub fn wrapped(&mut self, answer: Result<Vec<u8>, KmsError>) {
        if self.last() != Some(Step::Describe) {
            return;
        }
        match answer {
            Ok(blob) => {
                self.report.push((
                    Step::Wrap,
                    Outcome::Pass(format!("wrapped a probe ({} bytes)", blob.len())),
                ));
                self.blob = Some(blob);
            }
            Err(e) => self.fail(Step::Wrap, &e, Op::Wrap),
        }
    }

    /// The answer to [`Next::Unwrap`]; runs the comparison too.
    pub fn unwrapped(&mut self, answer: Result<SecretBytes, KmsError>) {
        if self.last() != Some(Step::Wrap) {
            return;
        }
        match answer {
            Ok(back) => {
                self.report
                    .push((Step::Unwrap, Outcome::Pass("unwrapped the probe".into())));
                let same: bool = back
                    .expose_secret()
                    .ct_eq(self.probe.expose_secret())
                    .into();
                if same {
                    self.report.push((
                        Step::Compare,
                        Outcome::Pass("the unwrapped probe matches".into()),
                    ));
                } else {
                    self.report.push((Step::Compare, Outcome::Fail {
                        problem: "the key returned a different value than was wrapped".into(),
                        fix: "the KMS answered inconsistently: check the endpoint configuration and report this".into(),
                    }));
                }
            }
            Err(e) => self.fail(Step::Unwrap, &e, Op::Unwrap),
        }
    }

    /// The steps so far, in order. Complete when [`Self::next`] is [`Next::Done`].
    pub fn report(&self) -> &[(Step, Outcome)] {
        &self.report
    }

    /// Whether every step passed.
    pub fn ok(&self) -> bool {
        self.report.len() == 6
            && self
                .report
                .iter()
                .all(|(_, o)| matches!(o, Outcome::Pass(_)))
    }
}

#[cfg(all(test, feature = "dev"))]
mod tests {
    use super::*;
    use crate::dev::TestRng;
    use crate::kms::aws::Aws;
    use crate::kms::http::HttpResponse;
    use crate::kms::provider::Wire;

    const KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[allow(clippy::unwrap_used, reason = "a test helper")]
    fn meta(state: &str) -> KeyState {
        let body = serde_json::json!({ "KeyMetadata": {
            "Arn": KEY, "KeyState": state, "KeyUsage": "ENCRYPT_DECRYPT",
            "KeySpec": "SYMMETRIC_DEFAULT", "MultiRegion": false,
        }});
        Aws.parse_describe(
            &HttpResponse {
                status: 200,
                headers: Vec::new(),
                body: body.to_string().into_bytes(),
            },
            core::time::Duration::ZERO,
        )
        .unwrap()
    }

    fn err(kind: KmsErrorKind, code: &str) -> KmsError {
        KmsError {
            kind,
            provider: "aws",
            code: code.into(),
            message: String::new(),
            status: 400,
        }
    }

    fn start(id: &str, regions: &[&str]) -> Validation {
        Validation::start(
            &Aws,
            id,
            regions,
            "arn:aws:iam::999:role/byok",
            "00aa",
            false,
            &mut TestRng::seeded(1),
        )
    }

    /// Through a principal every org shares, a key is attached only to the org it names; the
    /// fix is the provider's command naming this org. Not a denial: nothing is withdrawn.
    #[test]
    fn a_shared_principal_attaches_only_a_key_that_names_the_org() {
        use crate::kms::gcp::Gcp;
        const GCP_KEY: &str =
            "projects/acme-prod/locations/europe-west1/keyRings/byok/cryptoKeys/root";
        let state = |claim: Option<&str>| KeyState {
            key: GCP_KEY.into(),
            detail: "usable".into(),
            unusable: None,
            version: None,
            org_claim: claim.map(Into::into),
        };
        let run = |shared: bool, claim: Option<&str>| {
            let mut v = Validation::start(
                &Gcp,
                GCP_KEY,
                &[],
                "serviceAccount:byok@vendor.iam.gserviceaccount.com",
                "00aa",
                shared,
                &mut TestRng::seeded(1),
            );
            v.described(Ok(state(claim)));
            v
        };
        for claim in [None, Some("00bb"), Some("00AA"), Some("")] {
            let v = run(true, claim);
            let Outcome::Fail { problem, fix } = &v.report()[2].1 else {
                panic!("{claim:?}: {:?}", v.report())
            };
            assert!(
                problem.contains("00aa") && problem.contains(ORG_CLAIM),
                "{problem}"
            );
            assert!(
                !claim.is_some_and(|c| !c.is_empty() && problem.contains(c)),
                "the KMS's value is not repeated: {problem}"
            );
            assert_eq!(
                fix,
                "gcloud kms keys update root --keyring byok --location europe-west1 --project acme-prod --update-labels byok-org=00aa"
            );
            assert!(matches!(v.next(), Next::Done));
        }
        assert!(matches!(run(true, Some("00aa")).next(), Next::Wrap(..)));
        // A principal of this org's own (federation, a role): nothing to name.
        assert!(matches!(run(false, None).next(), Next::Wrap(..)));
    }

    #[test]
    fn a_good_key_passes_every_step() {
        let mut v = start(KEY, &["eu-west-1"]);
        assert!(matches!(v.next(), Next::Describe(_)));
        v.described(Ok(meta("Enabled")));
        let probe = match v.next() {
            Next::Wrap(_, p) => p.duplicate(),
            other => panic!("{other:?}"),
        };
        v.wrapped(Ok(alloc::vec![1, 2, 3]));
        assert!(matches!(v.next(), Next::Unwrap(_, b) if b == [1, 2, 3]));
        v.unwrapped(Ok(probe));
        assert!(matches!(v.next(), Next::Done));
        assert!(v.ok(), "{:?}", v.report());
    }

    #[test]
    fn failures_name_the_fix_and_skip_the_rest() {
        // Access denied on Decrypt: the fix is the statement with kms:Decrypt.
        let mut v = start(KEY, &[]);
        v.described(Ok(meta("Enabled")));
        v.wrapped(Ok(alloc::vec![1]));
        v.unwrapped(Err(err(
            KmsErrorKind::AccessDenied,
            "AccessDeniedException",
        )));
        let (step, outcome) = &v.report()[4];
        assert_eq!(*step, Step::Unwrap);
        let Outcome::Fail { fix, .. } = outcome else {
            panic!("{outcome:?}")
        };
        assert!(
            fix.contains("kms:Decrypt") && fix.contains("kms:EncryptionContext:byok:org"),
            "{fix}"
        );
        assert_eq!(
            v.report()[5],
            (Step::Compare, Outcome::Skipped(Step::Unwrap))
        );
        assert!(!v.ok());

        // A disabled key stops at describe.
        let mut v = start(KEY, &[]);
        v.described(Ok(meta("Disabled")));
        assert!(matches!(v.next(), Next::Done));
        assert!(matches!(&v.report()[2].1, Outcome::Fail { fix, .. } if fix.contains("EnableKey")));
        assert_eq!(
            v.report()[3],
            (Step::Wrap, Outcome::Skipped(Step::Describe))
        );

        // Region outside the org's residency list: no KMS call at all.
        let v = start(KEY, &["us-east-1", "us-west-2"]);
        assert!(matches!(v.next(), Next::Done));
        assert!(matches!(&v.report()[1].1, Outcome::Fail { fix, .. } if fix.contains("us-east-1")));
        assert_eq!(v.report().len(), 6);

        // A bare key id: parse fails with the reason.
        let v = start("1234abcd-12ab-34cd-56ef-1234567890ab", &[]);
        assert!(
            matches!(&v.report()[0].1, Outcome::Fail { problem, .. } if problem.contains("region and account"))
        );
        assert!(
            v.report()[1..]
                .iter()
                .all(|(_, o)| *o == Outcome::Skipped(Step::Parse))
        );

        // A KMS that answers with another value fails the comparison.
        let mut v = start(KEY, &[]);
        v.described(Ok(meta("Enabled")));
        v.wrapped(Ok(alloc::vec![1]));
        v.unwrapped(Ok(SecretBytes::from_bytes(&mut [0; 32])));
        assert!(matches!(
            v.report()[5],
            (Step::Compare, Outcome::Fail { .. })
        ));
    }

    #[test]
    fn answers_out_of_order_are_ignored() {
        let mut v = start(KEY, &[]);
        v.unwrapped(Ok(SecretBytes::from_bytes(&mut [0; 32])));
        v.wrapped(Ok(alloc::vec![1]));
        assert_eq!(v.report().len(), 2, "only parse and region so far");
        assert!(matches!(v.next(), Next::Describe(_)));
    }
}
