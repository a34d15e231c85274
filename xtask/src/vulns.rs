//! The vulnerability record (`configs/vulnerabilities.toml`) and the gate over Buildroot's
//! `make pkg-stats` output.
//!
//! The record says, for each security-relevant package, the version Berth ships and the known CVEs
//! fixed upstream in or after it, each with whether Berth is affected and why. `docs/security.md`
//! carries the table rendered from it (checked by a test here), `cargo xtask image` copies the
//! record into the manifest, and
//! `cargo xtask audit cves <pkg-stats.json>` fails on a CVE pkg-stats reports for one of these
//! packages that is neither recorded as fixed or not affecting Berth nor ignored by Buildroot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::audit::report::{Finding, Report, Severity, Verdict};

/// The record in the checkout at `repo`.
pub fn record_in(repo: &Path) -> PathBuf {
    repo.join("configs/vulnerabilities.toml")
}

fn record_path() -> PathBuf {
    record_in(&crate::util::repo_root())
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

    fn cve(&self, package: &str, id: &str) -> Option<&Cve> {
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

/// The part of `make pkg-stats`' JSON the gate reads (support/scripts/pkg-stats, dump_json).
#[derive(Debug, Deserialize)]
pub struct PkgStats {
    packages: BTreeMap<String, PkgStatsPackage>,
}

#[derive(Debug, Deserialize)]
struct PkgStatsPackage {
    current_version: Option<String>,
    /// CVEs NVD says affect this version.
    #[serde(default)]
    cves: Vec<String>,
    /// CVEs whose NVD data cannot tell whether this version is affected.
    #[serde(default)]
    unsure_cves: Vec<String>,
    /// `<PKG>_IGNORE_CVES`: patched in Buildroot or not applicable.
    #[serde(default)]
    ignored_cves: Vec<String>,
    /// Per check, `[verdict, message]`; it has a `cve` entry only when the NVD check ran.
    #[serde(default)]
    status: BTreeMap<String, serde_json::Value>,
}

impl PkgStats {
    pub fn parse(text: &str) -> Result<PkgStats> {
        serde_json::from_str(text)
            .context("not the JSON `make pkg-stats` writes (no \"packages\" object)")
    }
}

const RULE: &str = "recorded as fixed or not affecting Berth";

/// Every CVE pkg-stats reports for a recorded package, judged against the record.
pub fn gate(record: &Record, stats: &PkgStats) -> Report {
    let mut report = Report::new("CVEs in pkg-stats against configs/vulnerabilities.toml");
    let finding =
        |source: &str, subject: String, rule: &str, verdict: Verdict, detail: String| Finding {
            subject,
            rule: rule.to_string(),
            source: source.to_string(),
            severity: Severity::Required,
            verdict,
            detail,
        };
    for p in &record.packages {
        let key = p.pkg_stats.as_str();
        let Some(found) = stats.packages.get(key) else {
            report.push(finding(
                key,
                key.to_string(),
                "present in pkg-stats",
                Verdict::Fail,
                "pkg-stats has no such package: the configuration no longer builds it, or the record names it wrongly".into(),
            ));
            continue;
        };
        let version = found.current_version.as_deref().unwrap_or("(none)");
        let (verdict, detail) = if version == p.version {
            (Verdict::Pass, format!("{key} {version}"))
        } else {
            (
                Verdict::Fail,
                format!("pkg-stats reports {version}, the record says {}: update configs/vulnerabilities.toml", p.version),
            )
        };
        report.push(finding(
            key,
            format!("{key} {version}"),
            "version matches the record",
            verdict,
            detail,
        ));
        if !found.status.contains_key("cve") {
            report.push(finding(
                key,
                key.to_string(),
                "checked against NVD",
                Verdict::Fail,
                "pkg-stats did not check its CVEs: it ran without NVD data (`make pkg-stats` fetches it into <dl>/buildroot-nvd)".into(),
            ));
        }

        let reported: BTreeSet<(&str, bool)> = found
            .cves
            .iter()
            .map(|id| (id.as_str(), false))
            .chain(found.unsure_cves.iter().map(|id| (id.as_str(), true)))
            .collect();
        for (id, unsure) in reported {
            let note = if unsure {
                " (NVD cannot tell whether this version is affected)"
            } else {
                ""
            };
            let (verdict, detail) = match record.cve(key, id) {
                Some(c) if c.status == Status::Fixed => (Verdict::Pass, format!("fixed in {}", c.fixed_in)),
                Some(c) if c.status == Status::NotAffected => {
                    (Verdict::Exception(c.reason.clone().unwrap_or_default()), String::new())
                }
                Some(c) => (
                    Verdict::Fail,
                    format!("Berth is affected{note}: {}", c.reason.as_deref().unwrap_or_default()),
                ),
                None => (
                    Verdict::Fail,
                    format!("not in configs/vulnerabilities.toml{note}: record it as fixed, not-affected (with its reason) or affected"),
                ),
            };
            report.push(finding(key, id.to_string(), RULE, verdict, detail));
        }
        for id in &found.ignored_cves {
            report.push(finding(
                key,
                id.clone(),
                RULE,
                Verdict::Pass,
                format!(
                    "ignored by Buildroot ({}_IGNORE_CVES: patched or not applicable)",
                    key.to_uppercase().replace('-', "_")
                ),
            ));
        }
    }
    report
}

#[derive(Args)]
pub struct CvesArgs {
    /// The JSON `make pkg-stats` wrote (`<output>/pkg-stats.json`), with NVD data.
    pkg_stats: PathBuf,
    /// The vulnerability record to judge against.
    #[arg(long)]
    record: Option<PathBuf>,
}

pub fn run(args: CvesArgs, json: bool) -> Result<()> {
    let record = Record::load(&args.record.unwrap_or_else(record_path))?;
    let text = std::fs::read_to_string(&args.pkg_stats)
        .with_context(|| format!("could not read {}", args.pkg_stats.display()))?;
    let stats = PkgStats::parse(&text)
        .with_context(|| format!("{} is not usable", args.pkg_stats.display()))?;
    gate(&record, &stats).emit(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `make pkg-stats` output for the Berth defconfig on 1ef39b9196 + patches/buildroot, cut to
    /// the recorded packages and one other, with CVE lists filled in (the recording ran offline).
    const FIXTURE: &str = include_str!("../tests/fixtures/pkg-stats.json");

    fn real_record() -> Record {
        Record::load(&record_path()).unwrap()
    }

    /// Exactly one failure, starting with `prefix`.
    fn assert_only_failure(fails: &[String], prefix: &str) {
        assert!(
            fails.len() == 1 && fails[0].starts_with(prefix),
            "{fails:?}"
        );
    }

    /// The gate's failures, judging by the real record, on the fixture after `edit` changed it.
    fn failures_after(edit: impl FnOnce(&mut serde_json::Value)) -> Vec<String> {
        failures_by(&real_record(), edit)
    }

    /// The gate's failures, judging by `record`, on the fixture after `edit` changed it.
    fn failures_by(record: &Record, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<String> {
        let mut json: serde_json::Value = serde_json::from_str(FIXTURE).unwrap();
        edit(&mut json);
        failures(&gate(record, &serde_json::from_value(json).unwrap()))
    }

    fn failures(report: &Report) -> Vec<String> {
        report
            .findings
            .iter()
            .filter(|f| f.verdict == Verdict::Fail)
            .map(|f| format!("{} {}: {}", f.source, f.subject, f.detail))
            .collect()
    }

    #[test]
    fn the_recorded_fixture_passes_the_gate() {
        let report = gate(&real_record(), &PkgStats::parse(FIXTURE).unwrap());
        assert!(report.passed(), "{:?}", failures(&report));
        let exceptions: Vec<_> = report
            .findings
            .iter()
            .filter(|f| matches!(f.verdict, Verdict::Exception(_)))
            .map(|f| f.subject.as_str())
            .collect();
        assert_eq!(exceptions, ["CVE-2026-33997", "CVE-2026-34040"]);
        assert!(report.findings.iter().any(|f| f.subject == "CVE-2026-60002"
            && f.verdict == Verdict::Pass
            && f.detail.contains("OPENSSH_IGNORE_CVES")));
    }

    #[test]
    fn an_unrecorded_cve_fails_naming_it() {
        assert_eq!(
            failures_after(|j| j["packages"]["containerd"]["cves"] = json!(["CVE-2026-99999"])),
            ["containerd CVE-2026-99999: not in configs/vulnerabilities.toml: record it as fixed, not-affected (with its reason) or affected"]
        );
    }

    #[test]
    fn an_unsure_cve_needs_a_record_too() {
        let fails =
            failures_after(|j| j["packages"]["linux"]["unsure_cves"] = json!(["CVE-2026-12345"]));
        assert_eq!(fails.len(), 1, "{fails:?}");
        assert!(fails[0].contains("NVD cannot tell"), "{fails:?}");
    }

    #[test]
    fn a_cve_recorded_as_affected_fails() {
        let report_docker_cp_cve = |j: &mut serde_json::Value| {
            j["packages"]["docker-engine"]["cves"] = json!(["CVE-2026-42306"])
        };
        assert_eq!(failures_after(report_docker_cp_cve), Vec::<String>::new());

        let mut record = real_record();
        let cve = record
            .cves
            .iter_mut()
            .find(|c| c.id == "CVE-2026-42306")
            .unwrap();
        cve.status = Status::Affected;
        cve.reason = Some("shipped without patches/docker-engine/0003".into());
        assert_only_failure(
            &failures_by(&record, report_docker_cp_cve),
            "docker-engine CVE-2026-42306: Berth is affected: shipped without",
        );
    }

    #[test]
    fn a_version_other_than_the_recorded_one_fails() {
        let fails = failures_after(|j| {
            j["packages"]["runc"]["current_version"] = "1.3.7".into();
            j["packages"].as_object_mut().unwrap().remove("cryptsetup");
        });
        assert_eq!(fails.len(), 2, "{fails:?}");
        assert!(
            fails[0].contains("pkg-stats reports 1.3.7, the record says 1.3.6"),
            "{fails:?}"
        );
        assert!(
            fails[1].starts_with("cryptsetup cryptsetup: pkg-stats has no such package"),
            "{fails:?}"
        );
    }

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

    #[test]
    fn a_package_pkg_stats_did_not_check_against_nvd_fails() {
        let fails = failures_after(|j| {
            j["packages"]["openssh"]["status"]
                .as_object_mut()
                .unwrap()
                .remove("cve");
        });
        assert_only_failure(&fails, "openssh openssh: pkg-stats did not check its CVEs");
    }

    #[test]
    fn pkg_stats_without_packages_is_refused() {
        let err = format!("{:#}", PkgStats::parse("{\"stats\": {}}").unwrap_err());
        assert!(err.contains("no \"packages\" object"), "{err}");
    }

    /// docs/security.md holds the rendered record between two markers: one home, one copy.
    #[test]
    fn docs_security_carries_the_rendered_record() {
        let doc =
            std::fs::read_to_string(crate::util::repo_root().join("docs/security.md")).unwrap();
        let begin = "<!-- begin: rendered from configs/vulnerabilities.toml -->\n";
        let end = "<!-- end: rendered from configs/vulnerabilities.toml -->";
        let start = doc.find(begin).expect("begin marker in docs/security.md") + begin.len();
        let stop = doc[start..]
            .find(end)
            .expect("end marker in docs/security.md")
            + start;
        let rendered = real_record().render_markdown();
        assert!(
            doc[start..stop] == rendered,
            "docs/security.md is out of date; put this between the markers:\n{rendered}"
        );
    }
}
