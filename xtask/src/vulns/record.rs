//! The vulnerability record itself: its schema, loading and the checks that refuse a record
//! without reasons or with unknown packages.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

/// The record in the checkout at `repo`.
pub fn record_in(repo: &Path) -> PathBuf {
    repo.join("configs/vulnerabilities.toml")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    #[serde(rename = "package")]
    pub packages: Vec<Package>,
    #[serde(rename = "cve", default)]
    pub cves: Vec<Cve>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// The name people use, e.g. "Linux kernel".
    pub name: String,
    /// The package's key in pkg-stats' `packages` (Buildroot's `.mk` name, e.g. `go-src`).
    pub pkg_stats: String,
    /// The version Berth ships; pkg-stats reporting another one means the record is stale.
    pub version: String,
    /// What is known about CVEs fixed after `version`, in one sentence.
    pub known: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cve {
    pub id: String,
    /// A `pkg_stats` key of the record's packages.
    pub package: String,
    /// Upstream release or patch that fixes it.
    pub fixed_in: String,
    pub status: Status,
    /// Why Berth is not affected, or when it is and what to do: required unless `fixed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What proves a `not-affected` claim (an audit item), or that nothing can.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Fixed in the version shipped, or by a patch Buildroot applies.
    Fixed,
    /// The flaw is shipped but Berth cannot reach it.
    NotAffected,
    /// Berth ships the flaw: the gate fails until it is fixed.
    Affected,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Fixed => "fixed",
            Status::NotAffected => "not affected",
            Status::Affected => "**affected**",
        }
    }
}

impl Record {
    pub fn load(path: &Path) -> Result<Record> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!("could not read the vulnerability record {}", path.display())
        })?;
        Record::parse(&text)
            .with_context(|| format!("the vulnerability record {} is not valid", path.display()))
    }

    pub fn parse(text: &str) -> Result<Record> {
        let record: Record = toml::from_str(text).context("not the expected TOML")?;
        record.validate()?;
        Ok(record)
    }

    fn validate(&self) -> Result<()> {
        let mut keys = BTreeSet::new();
        for p in &self.packages {
            ensure!(
                keys.insert(p.pkg_stats.as_str()),
                "package '{}' is listed twice",
                p.pkg_stats
            );
        }
        let mut seen = BTreeSet::new();
        for c in &self.cves {
            ensure!(
                is_cve_id(&c.id),
                "'{}' is not a CVE id (CVE-YYYY-NNNN)",
                c.id
            );
            ensure!(
                keys.contains(c.package.as_str()),
                "{} names package '{}', which no [[package]] has as pkg_stats",
                c.id,
                c.package
            );
            ensure!(
                seen.insert((c.package.as_str(), c.id.as_str())),
                "{} is recorded twice for {}",
                c.id,
                c.package
            );
            let reason = c.reason.as_deref().map(str::trim).unwrap_or("");
            if c.status != Status::Fixed {
                ensure!(
                    !reason.is_empty(),
                    "{} ({}) is {} without a reason",
                    c.id,
                    c.package,
                    c.status.label()
                );
            }
            if c.status == Status::NotAffected {
                ensure!(
                    c.checked_by.as_deref().is_some_and(|s| !s.trim().is_empty()),
                    "{} ({}) is not-affected without checked_by (say what proves it, or that nothing can)",
                    c.id,
                    c.package
                );
            }
        }
        Ok(())
    }

    pub(super) fn cve(&self, package: &str, id: &str) -> Option<&Cve> {
        self.cves
            .iter()
            .find(|c| c.package == package && c.id == id)
    }

    /// The Markdown table `docs/security.md` carries: per package a row with what is known, then
    /// one row per recorded CVE. Only the test that compares it with the page needs it.
    #[cfg(test)]
    fn render_markdown(&self) -> String {
        let mut out = String::from(
            "| Package | Shipped | CVE | Fixed upstream in | Berth | Why |\n|---|---|---|---|---|---|\n",
        );
        for p in &self.packages {
            out.push_str(&format!(
                "| {} | {} | | | | {} |\n",
                cell(&p.name),
                cell(&p.version),
                cell(&p.known)
            ));
            for c in self.cves.iter().filter(|c| c.package == p.pkg_stats) {
                let mut why = c.reason.clone().unwrap_or_default();
                if let Some(check) = &c.checked_by {
                    why.push_str(&format!(". Checked by: {check}"));
                }
                out.push_str(&format!(
                    "| | | {} | {} | {} | {} |\n",
                    c.id,
                    cell(&c.fixed_in),
                    c.status.label(),
                    cell(&why)
                ));
            }
        }
        out
    }
}

#[cfg(test)]
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn is_cve_id(id: &str) -> bool {
    let mut parts = id.split('-');
    let digits = |s: &str, min: usize| s.len() >= min && s.bytes().all(|b| b.is_ascii_digit());
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("CVE"), Some(year), Some(number), None) if year.len() == 4 && digits(year, 4) && digits(number, 4)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_without_reasons_or_with_unknown_packages_is_refused() {
        let base = "[[package]]\nname = \"runc\"\npkg_stats = \"runc\"\nversion = \"1.3.6\"\nknown = \"-\"\n";
        let bad = [
            ("[[cve]]\nid = \"CVE-2026-1\"\npackage = \"runc\"\nfixed_in = \"x\"\nstatus = \"fixed\"\n", "not a CVE id"),
            ("[[cve]]\nid = \"CVE-2026-10000\"\npackage = \"runcc\"\nfixed_in = \"x\"\nstatus = \"fixed\"\n", "no [[package]]"),
            ("[[cve]]\nid = \"CVE-2026-10000\"\npackage = \"runc\"\nfixed_in = \"x\"\nstatus = \"affected\"\n", "without a reason"),
            ("[[cve]]\nid = \"CVE-2026-10000\"\npackage = \"runc\"\nfixed_in = \"x\"\nstatus = \"not-affected\"\nreason = \"r\"\n", "without checked_by"),
            ("[[cve]]\nid = \"CVE-2026-10000\"\npackage = \"runc\"\nfixed_in = \"x\"\nstatus = \"maybe\"\n", "not the expected TOML"),
        ];
        for (cve, message) in bad {
            let err = format!("{:#}", Record::parse(&format!("{base}{cve}")).unwrap_err());
            assert!(err.contains(message), "{cve}: {err}");
        }
        assert!(Record::parse(base).is_ok());
    }

    /// docs/security.md holds the rendered record between two markers: one home, one copy.
    #[test]
    fn docs_security_carries_the_rendered_record() {
        let doc =
            std::fs::read_to_string(crate::project::Repo::checkout().path("docs/security.md"))
                .unwrap();
        let begin = "<!-- begin: rendered from configs/vulnerabilities.toml -->\n";
        let end = "<!-- end: rendered from configs/vulnerabilities.toml -->";
        let start = doc.find(begin).expect("begin marker in docs/security.md") + begin.len();
        let stop = doc[start..]
            .find(end)
            .expect("end marker in docs/security.md")
            + start;
        let rendered = Record::load(&record_in(crate::project::Repo::checkout().root()))
            .unwrap()
            .render_markdown();
        assert!(
            doc[start..stop] == rendered,
            "docs/security.md is out of date; put this between the markers:\n{rendered}"
        );
    }
}
