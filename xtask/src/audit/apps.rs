//! The declared apps against CIS Docker Benchmark section 5, from the rule table
//! `configs/hardening/cis-apps.toml`. Pure once the table is read: an app that weakens an item
//! fails it unless `apps.toml` gives the reason, which the report then shows as an exception.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::report::{Finding, Report, Severity, Verdict};
use crate::apps::spec::{App, AppArmor, Setting};
use crate::apps::{apparmor, units};
use crate::project::Repo;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    pub benchmark: String,
    pub item: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// CIS item number, such as "5.5".
    pub id: String,
    pub title: String,
    pub severity: Severity,
    /// The `apps.toml` key the item is about.
    pub setting: Setting,
    /// Flags the generated `docker run` must hold.
    #[serde(default)]
    pub run_flags: Vec<String>,
}

impl Rules {
    pub fn parse(text: &str, name: &str) -> Result<Rules> {
        toml::from_str(text).with_context(|| format!("{name} is not a valid apps rule table"))
    }

    pub fn load(repo: &Repo) -> Result<Rules> {
        let path = repo.path(super::tables::APPS_RULES);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        Rules::parse(&text, &path.display().to_string())
    }
}

/// One finding per app and item.
pub fn audit(apps: &[App], rules: &Rules) -> Report {
    let mut report = Report::new(format!("{} section 5: declared apps", rules.benchmark));
    // The ID does not change which flags a unit has.
    let placeholder_id = format!("sha256:{}", "0".repeat(64));
    for app in apps {
        let args = units::run_args(app, &placeholder_id);
        for item in &rules.item {
            let missing: Vec<&str> = item
                .run_flags
                .iter()
                .filter(|f| !args.contains(f))
                .map(String::as_str)
                .collect();
            let (verdict, detail) = if !missing.is_empty() {
                (
                    Verdict::Fail,
                    format!("the unit's docker run lacks {}", missing.join(", ")),
                )
            } else {
                match (app.weakening(item.setting), app.reason(item.setting)) {
                    (None, _) => (Verdict::Pass, describe(app, item.setting)),
                    (Some(how), Some(reason)) => (Verdict::Exception(format!("{how}: {reason}")), how),
                    (Some(how), None) => (
                        Verdict::Fail,
                        format!(
                            "{how} without a reason: add `{} = \"why\"` under [app.reasons] of the app at line {} or keep the default",
                            item.setting.key(),
                            app.line
                        ),
                    ),
                }
            };
            report.push(Finding {
                subject: format!("app {}", app.name),
                rule: item.title.clone(),
                source: format!("CIS {}", item.id),
                severity: item.severity,
                verdict,
                detail,
            });
        }
    }
    report
}

/// The value behind a passing item, for the table.
fn describe(app: &App, setting: Setting) -> String {
    match setting {
        Setting::Memory => format!("--memory {} bytes, no swap", app.limits.memory_bytes),
        Setting::Cpus => format!(
            "--cpus {} (a CFS quota, stricter than shares)",
            app.limits.cpus
        ),
        Setting::Pids => format!("--pids-limit {}", app.limits.pids),
        Setting::AppArmor => match &app.hardening.apparmor {
            AppArmor::Profile(p) => format!(
                "--security-opt apparmor={} (from {}, loaded at boot from /{}/{})",
                p.name,
                p.file,
                apparmor::PROFILE_DIR,
                apparmor::staged_file(&app.name)
            ),
            other => format!("--security-opt apparmor={}", other.profile_name()),
        },
        _ => String::new(),
    }
}

/// Audit the apps file at `path` for `cargo xtask audit --apps`, printed as a table or JSON.
pub fn run(repo: &Repo, path: &Path, json: bool) -> Result<()> {
    let board = crate::project::default_board();
    let (limits, _) = crate::apps::board_limits(repo, board)?;
    let apps = crate::apps::load(path, &limits)?;
    audit(&apps, &Rules::load(repo)?).emit(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::spec::parse;
    use crate::apps::spec::tests::{board, DIGEST};

    fn rules() -> Rules {
        Rules::parse(
            include_str!("../../../configs/hardening/cis-apps.toml"),
            "cis-apps.toml",
        )
        .unwrap()
    }

    fn apps(extra: &str) -> Vec<App> {
        let text = format!("[[app]]\nname = \"web\"\nimage = \"docker.io/a/b@{DIGEST}\"\n{extra}");
        parse(&text, "apps.toml", &board()).unwrap()
    }

    fn verdict_of<'a>(report: &'a Report, item: &str) -> &'a Finding {
        report
            .findings
            .iter()
            .find(|f| f.source == format!("CIS {item}"))
            .unwrap()
    }

    #[test]
    fn the_table_covers_every_setting_with_its_cis_item() {
        let rules = rules();
        assert_eq!(rules.benchmark, "CIS Docker Benchmark v1.6.0");
        let all = [
            Setting::WEAKENABLE,
            &[Setting::Memory, Setting::Cpus, Setting::Pids],
        ]
        .concat();
        for setting in all {
            assert!(
                rules.item.iter().any(|i| i.setting == setting),
                "{setting:?} has no CIS item"
            );
        }
        let ids: Vec<&str> = rules.item.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "5.2", "5.4", "5.5", "5.10", "5.11", "5.12", "5.13", "5.15", "5.16", "5.17",
                "5.22", "5.26", "5.29", "5.31"
            ]
        );
    }

    #[test]
    fn a_hardened_app_passes_every_item() {
        let report = audit(&apps(""), &rules());
        assert_eq!(report.findings.len(), rules().item.len());
        assert!(
            report.findings.iter().all(|f| f.verdict == Verdict::Pass),
            "{}",
            report.render_table()
        );
        assert!(verdict_of(&report, "5.11")
            .detail
            .contains("201326592 bytes"));
    }

    #[test]
    fn privileged_without_a_reason_fails_the_audit() {
        let report = audit(&apps("privileged = true\n"), &rules());
        let f = verdict_of(&report, "5.5");
        assert_eq!(f.verdict, Verdict::Fail);
        assert!(
            f.detail.contains("privileged without a reason") && f.detail.contains("app at line 1"),
            "{}",
            f.detail
        );
        assert!(!report.passed());
        assert!(report.verdict().is_err());
    }

    #[test]
    fn a_weakening_with_its_reason_is_an_exception() {
        let report = audit(
            &apps("privileged = true\n[app.reasons]\nprivileged = \"drives the GPIO header\"\n"),
            &rules(),
        );
        let f = verdict_of(&report, "5.5");
        assert_eq!(
            f.verdict,
            Verdict::Exception("privileged: drives the GPIO header".into())
        );
        assert!(report.passed());
    }

    #[test]
    fn each_weakening_fails_its_own_item() {
        for (extra, item) in [
            ("cap_add = [\"NET_ADMIN\"]", "5.4"),
            ("apparmor = \"unconfined\"", "5.2"),
            ("network = \"host\"", "5.10"),
            ("read_only = false", "5.13"),
            ("restart = \"on-failure:10\"", "5.15"),
            ("restart = \"always\"", "5.15"),
            ("pid = \"host\"", "5.16"),
            ("ipc = \"host\"", "5.17"),
            ("seccomp = \"unconfined\"", "5.22"),
            ("no_new_privileges = false", "5.26"),
            ("userns = \"host\"", "5.31"),
        ] {
            let report = audit(&apps(&format!("{extra}\n")), &rules());
            let failed: Vec<&str> = report
                .findings
                .iter()
                .filter(|f| f.verdict == Verdict::Fail)
                .map(|f| f.source.as_str())
                .collect();
            assert_eq!(failed, [format!("CIS {item}")], "{extra}");
        }
    }

    #[test]
    fn apparmor_unconfined_needs_its_reason_and_the_profile_is_shown() {
        let f = verdict_of(
            &audit(&apps("apparmor = \"unconfined\"\n"), &rules()),
            "5.2",
        )
        .clone();
        assert_eq!(f.verdict, Verdict::Fail);
        assert_eq!(
            f.detail,
            "AppArmor unconfined without a reason: add `apparmor = \"why\"` under [app.reasons] of the app at line 1 or keep the default"
        );
        let reasoned = apps("apparmor = \"unconfined\"\n[app.reasons]\napparmor = \"ptraces\"\n");
        let report = audit(&reasoned, &rules());
        assert_eq!(
            verdict_of(&report, "5.2").verdict,
            Verdict::Exception("AppArmor unconfined: ptraces".into())
        );
        assert!(report.passed());
        let report = audit(&apps(""), &rules());
        assert_eq!(
            verdict_of(&report, "5.2").detail,
            "--security-opt apparmor=docker-default"
        );
    }

    #[test]
    fn a_limit_missing_from_the_unit_fails() {
        let mut rules = rules();
        let caps = rules.item.iter_mut().find(|i| i.id == "5.4").unwrap();
        caps.run_flags.push("--no-such-flag".into());
        let report = audit(&apps(""), &rules);
        assert!(verdict_of(&report, "5.4")
            .detail
            .contains("lacks --no-such-flag"));
    }

    #[test]
    fn the_example_file_is_valid() {
        let repo = Repo::checkout();
        let (limits, _) =
            crate::apps::board_limits(&repo, crate::project::default_board()).unwrap();
        let apps = crate::apps::load(&repo.path("apps.example.toml"), &limits).unwrap();
        assert!(!apps.is_empty());
        let findings = audit(&apps, &Rules::load(&repo).unwrap());
        assert!(findings.passed(), "{}", findings.render_table());
    }
}
