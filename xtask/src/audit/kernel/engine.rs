//! The rule engine: rules + resolved config + command line + sysctl + exceptions in, [`Report`]
//! out. Pure: no I/O.

use std::collections::BTreeSet;

use anyhow::Result;

use super::cmdline::Cmdline;
use super::rules::{parse_condition, CmdlineRule, KconfigRule, Meta, Rules, SysctlRule};
use super::sysctl::Sysctl;
use crate::audit::exceptions::{self, KernelException};
use crate::audit::report::{Finding, Report, Severity, Verdict};
use crate::kconfig::{Resolved, Value};

/// Which compiler resolved the config: compiler-probed options (such as the ARM per-task stack
/// protector) can only be judged on a config resolved with an ARM compiler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    Target,
    /// Resolved with the host's compiler: rules marked `compiler_probe` drop to recommended.
    Host,
}

pub struct Inputs<'a> {
    pub config: &'a Resolved,
    /// `None`: no command line given, its rules are not judged.
    pub cmdline: Option<&'a Cmdline>,
    /// `None`: no sysctl folder given, its rules are not judged.
    pub sysctl: Option<&'a Sysctl>,
}

fn kconfig_matches(value: Option<&Value>, want: &str) -> bool {
    match (value, want) {
        (None | Some(Value::No), "n") => true,
        (Some(Value::Yes), "y") | (Some(Value::Module), "m") => true,
        (Some(Value::Num(n)), w) => n == w,
        (Some(Value::Str(s)), w) => s == w,
        _ => false,
    }
}

fn describe(value: Option<&Value>) -> String {
    match value {
        None => "absent (unknown symbol or unmet dependencies)".into(),
        Some(Value::No) => "is not set".into(),
        Some(v) => format!("={v}"),
    }
}

fn parse_number(text: &str) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let n = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => i64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    Some(if negative { -n } else { n })
}

/// The value Kconfig would need, as a short rule text for the table.
fn kconfig_rule_text(rule: &KconfigRule) -> String {
    let body = if let Some(min) = rule.min {
        format!(">= {min}")
    } else if !rule.contains.is_empty() {
        format!("contains {}", rule.contains.join(","))
    } else {
        rule.want
            .iter()
            .map(|w| {
                if w == "n" {
                    "is not set".to_string()
                } else {
                    format!("={w}")
                }
            })
            .collect::<Vec<_>>()
            .join(" or ")
    };
    with_alternatives(body, &rule.meta())
}

fn with_alternatives(body: String, meta: &Meta<'_>) -> String {
    if meta.alternatives.is_empty() {
        format!("want {body}")
    } else {
        format!("want {body} (or {})", meta.alternatives.join(", "))
    }
}

fn alternative_holds(meta: &Meta<'_>, config: &Resolved) -> Option<String> {
    meta.alternatives.iter().find_map(|alt| {
        let (sym, val) = parse_condition(alt).ok()?;
        kconfig_matches(config.get(sym), val).then(|| alt.clone())
    })
}

/// Judge one kconfig rule: `Ok(detail)` when satisfied, `Err(detail)` when not.
fn judge_kconfig(rule: &KconfigRule, config: &Resolved) -> std::result::Result<String, String> {
    let value = config.get(&rule.option);
    let held = if let Some(min) = rule.min {
        matches!(value, Some(Value::Num(n)) if parse_number(n).is_some_and(|n| n >= min))
    } else if !rule.contains.is_empty() {
        match value {
            Some(Value::Str(s)) => {
                let items: BTreeSet<&str> = s.split(',').map(str::trim).collect();
                rule.contains.iter().all(|c| items.contains(c.as_str()))
            }
            _ => false,
        }
    } else {
        rule.want.iter().any(|w| kconfig_matches(value, w))
    };
    if held {
        return Ok(describe(value));
    }
    match alternative_holds(&rule.meta(), config) {
        Some(alt) => Ok(format!("{} but {alt}", describe(value))),
        None => Err(describe(value)),
    }
}

fn judge_cmdline(
    rule: &CmdlineRule,
    cmdline: &Cmdline,
    config: &Resolved,
) -> (String, std::result::Result<String, String>) {
    let text = if rule.absent {
        "absent".to_string()
    } else if rule.want.is_empty() && rule.contains.is_empty() {
        "present".to_string()
    } else {
        let lists = (!rule.contains.is_empty())
            .then(|| format!("{} listing {}", rule.param, rule.contains.join(",")));
        let values = rule
            .want
            .iter()
            .map(|w| format!("{}={w}", rule.param))
            .chain(lists)
            .collect::<Vec<_>>()
            .join(" or ");
        if rule.allow_absent {
            format!("{values} or absent")
        } else {
            values
        }
    };
    let got = cmdline.get(&rule.param);
    let shown = match got {
        None => "absent".to_string(),
        Some("") => "present".to_string(),
        Some(v) => format!("{}={v}", rule.param),
    };
    let held = match got {
        None => rule.absent || rule.allow_absent,
        Some(_) if rule.absent => false,
        Some(v) => {
            (rule.want.is_empty() && rule.contains.is_empty())
                || rule.want.iter().any(|w| w == v)
                || (!rule.contains.is_empty()
                    && rule
                        .contains
                        .iter()
                        .all(|c| v.split(',').any(|item| item == c)))
        }
    };
    let verdict = if held {
        Ok(shown)
    } else if let Some(alt) = alternative_holds(&rule.meta(), config) {
        Ok(format!("{shown} but {alt}"))
    } else {
        Err(shown)
    };
    (with_alternatives(text, &rule.meta()), verdict)
}

pub(super) fn judge_sysctl(
    rule: &SysctlRule,
    sysctl: &Sysctl,
    config: &Resolved,
) -> std::result::Result<String, String> {
    let shown = match sysctl.get(&rule.key) {
        None => sysctl.why_unset(&rule.key),
        Some((value, origin)) => format!("= {value} ({origin})"),
    };
    let held = sysctl
        .get(&rule.key)
        .is_some_and(|(v, _)| rule.want.contains(&v));
    if held {
        Ok(shown)
    } else if let Some(alt) = alternative_holds(&rule.meta(), config) {
        Ok(format!("{shown} but {alt}"))
    } else {
        Err(shown)
    }
}

/// Every exception must name a rule of the table (and its source, when it gives one).
fn check_exceptions(exceptions: &[KernelException], rules: &Rules) -> Result<()> {
    let known: BTreeSet<(String, &str)> = rules
        .kconfig
        .iter()
        .map(|r| (r.option.clone(), r.source.as_str()))
        .chain(
            rules
                .cmdline
                .iter()
                .map(|r| (format!("cmdline:{}", r.param), r.source.as_str())),
        )
        .chain(
            rules
                .sysctl
                .iter()
                .map(|r| (format!("sysctl:{}", r.key), r.source.as_str())),
        )
        .collect();
    exceptions::reject_unmatched(
        exceptions,
        |e| {
            known.iter().any(|(subject, source)| {
                *subject == e.subject && e.source.as_deref().is_none_or(|want| want == *source)
            })
        },
        "rule in the kernel rule file",
    )
}

/// Judge every rule. A failed rule with an exception becomes `Verdict::Exception`; an exception
/// naming no rule is an error, so a typo cannot silently waive nothing.
pub fn evaluate(
    title: &str,
    rules: &Rules,
    inputs: &Inputs<'_>,
    exceptions: &[KernelException],
    toolchain: Toolchain,
) -> Result<Report> {
    check_exceptions(exceptions, rules)?;
    let waiver = |subject: &str, source: &str| {
        exceptions
            .iter()
            .find(|e| e.subject == subject && e.source.as_deref().is_none_or(|s| s == source))
            .map(|e| e.reason.clone())
    };

    let mut report = Report::new(title);
    let mut push = |subject: String,
                    rule: String,
                    meta: &Meta<'_>,
                    severity: Severity,
                    outcome: std::result::Result<String, String>| {
        let (verdict, detail) = match outcome {
            Ok(detail) => (Verdict::Pass, detail),
            Err(detail) => match waiver(&subject, meta.source) {
                Some(reason) => (Verdict::Exception(reason), detail),
                None => match meta.note {
                    Some(note) => (Verdict::Fail, format!("{detail}; {note}")),
                    None => (Verdict::Fail, detail),
                },
            },
        };
        report.push(Finding {
            subject,
            rule,
            source: meta.source.to_string(),
            severity,
            verdict,
            detail,
        });
    };

    for rule in &rules.kconfig {
        let severity = if rule.compiler_probe && toolchain == Toolchain::Host {
            Severity::Recommended
        } else {
            rule.meta().severity
        };
        push(
            rule.option.clone(),
            kconfig_rule_text(rule),
            &rule.meta(),
            severity,
            judge_kconfig(rule, inputs.config),
        );
    }
    if let Some(cmdline) = inputs.cmdline {
        for rule in &rules.cmdline {
            let (text, outcome) = judge_cmdline(rule, cmdline, inputs.config);
            push(
                format!("cmdline:{}", rule.param),
                text,
                &rule.meta(),
                rule.meta().severity,
                outcome,
            );
        }
    }
    if let Some(sysctl) = inputs.sysctl {
        for rule in &rules.sysctl {
            let text = with_alternatives(format!("= {}", rule.want.join(" or ")), &rule.meta());
            push(
                format!("sysctl:{}", rule.key),
                text,
                &rule.meta(),
                rule.meta().severity,
                judge_sysctl(rule, sysctl, inputs.config),
            );
        }
    }
    Ok(report)
}
