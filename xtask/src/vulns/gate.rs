//! The gate over Buildroot's `make pkg-stats` output (`cargo xtask audit cves`): every CVE it
//! reports for a recorded package must be recorded as fixed or not affecting Berth, or ignored by
//! Buildroot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde::Deserialize;

use super::record::{record_in, Record, Status};
use crate::audit::report::{Finding, Report, Severity, Verdict};
use crate::project::Repo;

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

/// Judge the pkg-stats output against the record (by default the checkout's).
pub fn run(repo: &Repo, args: CvesArgs, json: bool) -> Result<()> {
    let record = Record::load(&args.record.unwrap_or_else(|| record_in(repo.root())))?;
    let text = std::fs::read_to_string(&args.pkg_stats)
        .with_context(|| format!("could not read {}", args.pkg_stats.display()))?;
    let stats = PkgStats::parse(&text)
        .with_context(|| format!("{} is not usable", args.pkg_stats.display()))?;
    gate(&record, &stats).emit(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vulns::record_in;
    use serde_json::json;

    /// `make pkg-stats` output for the Berth defconfig on 1ef39b9196 + patches/buildroot, cut to
    /// the recorded packages and one other, with CVE lists filled in (the recording ran offline).
    const FIXTURE: &str = include_str!("../../tests/fixtures/pkg-stats.json");

    fn real_record() -> Record {
        Record::load(&record_in(crate::project::Repo::checkout().root())).unwrap()
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
}
