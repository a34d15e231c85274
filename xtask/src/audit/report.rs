//! Audit findings and how they are shown: one shape for the kernel, ELF and CIS audits.
//!
//! Rules live in data files under `configs/hardening/`; every deliberate exception lives in
//! `configs/hardening/exceptions.toml` with its reason ([`super::exceptions`]). This module only
//! holds and renders verdicts.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

/// How much a failed rule matters: only `Required` failures make an audit exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Required,
    Recommended,
    /// Shown for the record; a failure proves nothing wrong (a stack-protector symbol that a
    /// correct -fstack-protector-strong build may lack).
    Info,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// A documented exception; the reason comes from the exceptions file.
    Exception(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was examined: a config option, a file in the rootfs, a CIS item.
    pub subject: String,
    /// Which rule: the property or requirement checked.
    pub rule: String,
    /// Where the rule comes from (docker-required, kspp, CIS 2.9, elf-hardening, ...).
    pub source: String,
    pub severity: Severity,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What was found, for a human reading a failure.
    pub detail: String,
}

impl Finding {
    /// The verdict in a table's words: `FAIL` only for a required rule.
    pub fn mark(&self) -> &'static str {
        match (&self.verdict, self.severity) {
            (Verdict::Pass, _) => "pass",
            (Verdict::Fail, Severity::Required) => "FAIL",
            (Verdict::Fail, Severity::Recommended) => "warn",
            (Verdict::Fail, Severity::Info) => "info",
            (Verdict::Exception(_), _) => "exception",
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Totals {
    pub passed: usize,
    pub failed: usize,
    pub failed_required: usize,
    pub exceptions: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub title: String,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn new(title: impl Into<String>) -> Self {
        Report {
            title: title.into(),
            findings: Vec::new(),
        }
    }

    pub fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    pub fn totals(&self) -> Totals {
        totals(self.findings.iter())
    }

    pub fn totals_by_source(&self) -> BTreeMap<&str, Totals> {
        let mut sources: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
        for f in &self.findings {
            sources.entry(f.source.as_str()).or_default().push(f);
        }
        sources
            .into_iter()
            .map(|(k, v)| (k, totals(v.into_iter())))
            .collect()
    }

    /// True when no required rule failed outside a documented exception.
    pub fn passed(&self) -> bool {
        self.totals().failed_required == 0
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "title": self.title,
            "passed": self.passed(),
            "totals": self.totals(),
            "totals_by_source": self.totals_by_source(),
            "findings": self.findings,
        })
    }

    /// A table grouped by source, then totals per source and overall.
    pub fn render_table(&self) -> String {
        self.render(true)
    }

    /// The same table without the passing rows: only what needs attention (failures, warnings,
    /// exceptions), then the totals.
    pub fn render_attention(&self) -> String {
        self.render(false)
    }

    fn render(&self, include_passing: bool) -> String {
        let mut out = format!("{}\n", self.title);
        let width = self
            .findings
            .iter()
            .map(|f| f.subject.len())
            .max()
            .unwrap_or(0)
            .min(48);
        let mut grouped: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
        for f in self
            .findings
            .iter()
            .filter(|f| include_passing || f.verdict != Verdict::Pass)
        {
            grouped.entry(f.source.as_str()).or_default().push(f);
        }
        for (source, findings) in &grouped {
            out.push_str(&format!("\n[{source}]\n"));
            for f in findings {
                let mark = f.mark();
                let note = match &f.verdict {
                    Verdict::Pass => "",
                    Verdict::Fail => &f.detail,
                    Verdict::Exception(reason) => reason,
                };
                out.push_str(&format!("  {mark:<9} {:<width$}  {}", f.subject, f.rule));
                if !note.is_empty() {
                    out.push_str(&format!("  ({note})"));
                }
                out.push('\n');
            }
        }
        out.push_str("\nTotals by source:\n");
        for (source, t) in self.totals_by_source() {
            out.push_str(&format!(
                "  {source:<24} passed {:>4}  failed {:>4} (required {:>3})  exceptions {:>3}\n",
                t.passed, t.failed, t.failed_required, t.exceptions
            ));
        }
        let t = self.totals();
        out.push_str(&format!(
            "Total: passed {}, failed {} (required {}), exceptions {} -> {}\n",
            t.passed,
            t.failed,
            t.failed_required,
            t.exceptions,
            if self.passed() { "PASS" } else { "FAIL" }
        ));
        out
    }

    /// Print as a table or JSON; return an error when a required rule failed.
    pub fn emit(&self, json: bool) -> Result<()> {
        print(json, || self.to_json(), || self.render_table())?;
        self.verdict()
    }

    /// An error naming how many required rules failed, if any did.
    pub fn verdict(&self) -> Result<()> {
        anyhow::ensure!(
            self.passed(),
            "{}: {} required rule(s) failed",
            self.title,
            self.totals().failed_required
        );
        Ok(())
    }
}

/// Print an audit as pretty JSON or as its table.
pub fn print(
    json: bool,
    to_json: impl FnOnce() -> serde_json::Value,
    table: impl FnOnce() -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&to_json())?);
    } else {
        print!("{}", table());
    }
    Ok(())
}

fn totals<'a>(findings: impl Iterator<Item = &'a Finding>) -> Totals {
    let mut t = Totals::default();
    for f in findings {
        match f.verdict {
            Verdict::Pass => t.passed += 1,
            Verdict::Fail => {
                t.failed += 1;
                if f.severity == Severity::Required {
                    t.failed_required += 1;
                }
            }
            Verdict::Exception(_) => t.exceptions += 1,
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(source: &str, severity: Severity, verdict: Verdict) -> Finding {
        Finding {
            subject: "CONFIG_X".into(),
            rule: "=y".into(),
            source: source.into(),
            severity,
            verdict,
            detail: "is not set".into(),
        }
    }

    #[test]
    fn only_required_failures_fail_the_report() {
        let mut r = Report::new("t");
        r.push(finding("kspp", Severity::Recommended, Verdict::Fail));
        r.push(finding(
            "kspp",
            Severity::Required,
            Verdict::Exception("why".into()),
        ));
        assert!(r.passed());
        r.push(finding(
            "docker-required",
            Severity::Required,
            Verdict::Fail,
        ));
        assert!(!r.passed());
        let t = r.totals();
        assert_eq!(
            (t.passed, t.failed, t.failed_required, t.exceptions),
            (0, 2, 1, 1)
        );
        assert!(r.render_table().contains("FAIL"));
        r.push(finding("network", Severity::Required, Verdict::Pass));
        assert!(r.render_table().contains("[network]"));
        let attention = r.render_attention();
        assert!(!attention.contains("[network]") && !attention.contains("  pass "));
        assert!(attention.contains("FAIL") && attention.contains("exception"));
        assert_eq!(r.to_json()["totals"]["failed_required"], 1);
    }
}
