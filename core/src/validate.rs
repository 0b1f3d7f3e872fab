//! Key setup validation: the steps every provider's check goes through, how each ended, and the
//! report a host shows or sends. Provider-neutral and without I/O, so the server and the browser
//! (wasm) report the same steps with the same words.
//!
//! ```text
//! parse identifier -> region allowed -> describe key -> wrap probe -> unwrap probe -> compare
//! ```
//!
//! A provider's plan (for AWS, `kms::aws::validate::Validation`, with the `kms` feature) records
//! one [`Outcome`] per [`Step`]; [`report`] turns them into [`StepReport`]s, the JSON the API
//! returns:
//!
//! ```json
//! {"step": "wrap probe", "outcome": "fail", "detail": "access denied ...", "fix": "{...}"}
//! ```

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// The steps, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// The identifier is a key or alias ARN.
    Parse,
    /// The key's region is one the org allows (data residency).
    Region,
    /// `DescribeKey`: enabled, symmetric, for encryption.
    Describe,
    /// `Encrypt` of a random probe.
    Wrap,
    /// `Decrypt` of the wrapped probe.
    Unwrap,
    /// The unwrapped probe equals the probe.
    Compare,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Self; 6] = [
        Self::Parse,
        Self::Region,
        Self::Describe,
        Self::Wrap,
        Self::Unwrap,
        Self::Compare,
    ];

    /// Name for reports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Parse => "parse identifier",
            Self::Region => "region allowed",
            Self::Describe => "describe key",
            Self::Wrap => "wrap probe",
            Self::Unwrap => "unwrap probe",
            Self::Compare => "compare",
        }
    }
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It passed; the detail says what was checked.
    Pass(String),
    /// It failed; what is wrong, and the fix.
    Fail {
        /// What went wrong.
        problem: String,
        /// What to do (for AccessDenied: the statement to add, as JSON).
        fix: String,
    },
    /// Not run, because an earlier step failed.
    Skipped(Step),
}

/// A step's outcome in a report: `pass`, `fail` or `skipped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The step passed.
    Pass,
    /// The step failed; the report's `fix` says what to do.
    Fail,
    /// The step did not run because an earlier one failed.
    Skipped,
}

impl Verdict {
    /// The word used in reports: `pass`, `fail` or `skipped`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Fail => "fail",
            Self::Skipped => "skipped",
        }
    }
}

/// Compares with the report word, as hosts that read reports as text do.
impl PartialEq<&str> for Verdict {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One step of a validation report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = StepView))]
pub struct StepReport {
    /// The step: `parse identifier`, `region allowed`, `describe key`, `wrap probe`,
    /// `unwrap probe`, `compare`.
    pub step: String,
    /// `pass`, `fail` or `skipped`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub outcome: Verdict,
    /// What was checked, or what went wrong.
    pub detail: String,
    /// For a failure: the fix (for an access denial, the statement to add, as JSON).
    pub fix: Option<String>,
}

impl StepReport {
    /// The report line of `step`, which ended with `outcome`.
    pub fn new(step: Step, outcome: &Outcome) -> Self {
        let (verdict, detail, fix) = match outcome {
            Outcome::Pass(d) => (Verdict::Pass, d.clone(), None),
            Outcome::Fail { problem, fix } => (Verdict::Fail, problem.clone(), Some(fix.clone())),
            Outcome::Skipped(by) => (
                Verdict::Skipped,
                format!("skipped: {} failed", by.name()),
                None,
            ),
        };
        Self {
            step: step.name().to_string(),
            outcome: verdict,
            detail,
            fix,
        }
    }
}

/// The report of `steps`, in order.
pub fn report(steps: &[(Step, Outcome)]) -> Vec<StepReport> {
    steps
        .iter()
        .map(|(step, outcome)| StepReport::new(*step, outcome))
        .collect()
}

/// Whether a report is complete (every step present, in order) and every step passed.
pub fn passed(report: &[StepReport]) -> bool {
    report.len() == Step::ALL.len()
        && report
            .iter()
            .zip(Step::ALL)
            .all(|(r, s)| r.step == s.name() && r.outcome == Verdict::Pass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn each_outcome_reports_with_its_json() {
        let steps = vec![
            (Step::Parse, Outcome::Pass("key arn:aws:kms:...".into())),
            (
                Step::Region,
                Outcome::Fail {
                    problem: "region us-east-1 is not allowed".into(),
                    fix: "use a key in eu-west-1".into(),
                },
            ),
            (Step::Describe, Outcome::Skipped(Step::Region)),
        ];
        let json = serde_json::to_string(&report(&steps)).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"[{"step":"parse identifier","outcome":"pass","detail":"key arn:aws:kms:...","fix":null},"#,
                r#"{"step":"region allowed","outcome":"fail","detail":"region us-east-1 is not allowed","fix":"use a key in eu-west-1"},"#,
                r#"{"step":"describe key","outcome":"skipped","detail":"skipped: region allowed failed","fix":null}]"#
            )
        );
        let back: Vec<StepReport> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report(&steps));
    }

    #[test]
    fn verdicts_read_as_their_words() {
        for v in [Verdict::Pass, Verdict::Fail, Verdict::Skipped] {
            assert_eq!(
                serde_json::to_string(&v).unwrap(),
                format!("\"{}\"", v.as_str())
            );
            assert!(v == v.as_str());
        }
        assert!(Verdict::Fail == "fail");
        assert!(Verdict::Fail != "pass");
    }

    #[test]
    fn step_names_are_the_reported_words() {
        let names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "parse identifier",
                "region allowed",
                "describe key",
                "wrap probe",
                "unwrap probe",
                "compare"
            ]
        );
    }

    #[test]
    fn a_report_passes_only_when_complete_and_all_pass() {
        let all: Vec<(Step, Outcome)> = Step::ALL
            .iter()
            .map(|s| (*s, Outcome::Pass("ok".into())))
            .collect();
        assert!(passed(&report(&all)));
        assert!(!passed(&report(&all[..5])));
        assert!(!passed(&[]));
        let mut failed = all.clone();
        failed[5].1 = Outcome::Fail {
            problem: "differs".into(),
            fix: "report".into(),
        };
        assert!(!passed(&report(&failed)));
        let mut reordered = all;
        reordered.swap(0, 1);
        assert!(!passed(&report(&reordered)));
    }
}
