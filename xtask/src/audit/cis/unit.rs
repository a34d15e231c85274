//! systemd units as systemd reads them: drop-ins, continuation lines, list resets.

use std::collections::BTreeMap;

use anyhow::Result;

use super::rules::UnitExpect;
use crate::rootfs::RootFs;
use crate::systemd_unit::parse_unit;

pub(crate) const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Every assignment of `section.key` in the unit and its drop-ins, in the order systemd applies
/// them (an empty assignment resets the list). `None` when the unit is not in the image.
pub(crate) fn unit_values(
    fs: &dyn RootFs,
    unit: &str,
    section: &str,
    key: &str,
) -> Result<Option<Vec<String>>> {
    let mut main = None;
    for dir in UNIT_DIRS {
        if let Some(bytes) = fs.read(&format!("{dir}/{unit}"))? {
            main = Some(String::from_utf8_lossy(&bytes).into_owned());
            break;
        }
    }
    let Some(main) = main else { return Ok(None) };
    // Drop-ins sort by file name across folders; a name in /etc hides the same name elsewhere.
    let mut dropins: BTreeMap<String, String> = BTreeMap::new();
    for dir in UNIT_DIRS.iter().rev() {
        let folder = format!("{dir}/{unit}.d");
        for name in fs.list(&folder)?.unwrap_or_default() {
            if name.ends_with(".conf") {
                if let Some(bytes) = fs.read(&format!("{folder}/{name}"))? {
                    dropins.insert(name, String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
    }
    let mut values = Vec::new();
    for text in std::iter::once(&main).chain(dropins.values()) {
        for (s, k, v) in parse_unit(text) {
            if s == section && k == key {
                if v.is_empty() {
                    values.clear();
                } else {
                    values.push(v);
                }
            }
        }
    }
    Ok(Some(values))
}

pub(super) fn unit_check(
    unit: &str,
    key: &str,
    values: &[String],
    expect: UnitExpect,
    want: &str,
) -> std::result::Result<String, String> {
    let last = values.last();
    match (expect, last) {
        (UnitExpect::Equals, Some(v)) if v == want => Ok(format!("{unit}: {key}={v}")),
        (UnitExpect::Equals, other) => Err(format!(
            "{unit}: {key} is {}, not {want}",
            shown_unit(other)
        )),
        (UnitExpect::AbsentOrEquals, None) => Ok(format!("{unit}: {key} at its default")),
        (UnitExpect::AbsentOrEquals, Some(v)) if v == want => Ok(format!("{unit}: {key}={v}")),
        (UnitExpect::AbsentOrEquals, Some(v)) => Err(format!("{unit}: {key}={v}, not {want}")),
        (UnitExpect::Lists, _)
            if values
                .iter()
                .any(|v| v.split_whitespace().any(|w| w == want)) =>
        {
            Ok(format!("{unit}: {key} lists {want}"))
        }
        (UnitExpect::Lists, _) => Err(format!("{unit}: {key} does not list {want}")),
        (UnitExpect::SetAndNot, Some(v)) if v != want => Ok(format!("{unit}: {key}={v}")),
        (UnitExpect::SetAndNot, Some(v)) => Err(format!("{unit}: {key}={v}")),
        (UnitExpect::SetAndNot, None) => Err(format!("{unit}: {key} unset, so {want}")),
        (UnitExpect::LacksPrefix, _) => {
            let hit = values
                .iter()
                .flat_map(|v| v.split_whitespace())
                .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
                .find(|w| w.starts_with(want));
            match hit {
                Some(w) => Err(format!("{unit}: {key} sets {w}")),
                None => Ok(format!("{unit}: no {key} sets {want}")),
            }
        }
    }
}

/// The commands systemd runs for a unit.
const EXEC_KEYS: &[&str] = &[
    "ExecCondition",
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
];

/// Every unit and drop-in of the image whose commands hold one of `words`: allowed, with a note,
/// when the unit (with its drop-ins) gives its reason under `[Unit]` `reason_key`; a problem
/// naming the file otherwise.
pub(super) fn units_without(
    fs: &dyn RootFs,
    words: &[String],
    reason_key: &str,
) -> Result<std::result::Result<String, String>> {
    // (file, unit it belongs to); a folder reached twice through a link adds nothing new.
    let mut files = std::collections::BTreeSet::new();
    for dir in UNIT_DIRS {
        // With a merged /usr, /lib/systemd/system is /usr/lib/systemd/system.
        let Some((dir, _)) = fs.resolve(dir, true)? else {
            continue;
        };
        for name in fs.list(&dir)?.unwrap_or_default() {
            let path = format!("{dir}/{name}");
            let Some(stat) = fs.lstat(&path)? else {
                continue;
            };
            if stat.is_symlink {
                continue; // enablement links and masks point at units listed anyway, or nothing
            }
            match name.strip_suffix(".d") {
                Some(unit) if stat.is_dir => {
                    for conf in fs.list(&path)?.unwrap_or_default() {
                        if conf.ends_with(".conf") {
                            files.insert((format!("{path}/{conf}"), unit.to_string()));
                        }
                    }
                }
                _ if !stat.is_dir => {
                    files.insert((path, name.clone()));
                }
                _ => {}
            }
        }
    }
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    for (file, unit) in &files {
        let Some(bytes) = fs.read(file)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let Some(word) = parse_unit(&text)
            .into_iter()
            .filter(|(section, key, _)| section == "Service" && EXEC_KEYS.contains(&key.as_str()))
            .find_map(|(_, _, value)| words.iter().find(|w| value.contains(w.as_str())))
        else {
            continue;
        };
        let reason =
            unit_values(fs, unit, "Unit", reason_key)?.and_then(|values| values.last().cloned());
        match reason {
            Some(reason) => notes.push(format!("{unit}: {word}, because {reason}")),
            None => problems.push(format!(
                "{file} runs a command with {word}, and {unit} gives no reason ({reason_key}=)"
            )),
        }
    }
    Ok(if !problems.is_empty() {
        Err(problems.join("; "))
    } else if notes.is_empty() {
        Ok(format!(
            "no unit runs a command with {}",
            words.join(" or ")
        ))
    } else {
        Ok(notes.join("; "))
    })
}

fn shown_unit(v: Option<&String>) -> String {
    v.map(|v| format!("'{v}'"))
        .unwrap_or_else(|| "unset".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::rootfs::tests::MemFs;

    #[test]
    fn unit_parsing_joins_continuations_and_drop_ins_reset() {
        let mut fs = MemFs::default();
        fs.file(
            "/usr/lib/systemd/system/docker.service",
            0o644,
            "[Service]\nExecStart=/usr/bin/dockerd \\\n  -H fd://\n# c\n[Unit]\nAfter=a\n",
        );
        fs.file(
            "/etc/systemd/system/docker.service.d/10-x.conf",
            0o644,
            "[Unit]\nAfter=\nAfter=b c\n",
        );
        let exec = unit_values(&fs, "docker.service", "Service", "ExecStart")
            .unwrap()
            .unwrap();
        assert_eq!(exec, ["/usr/bin/dockerd  -H fd://"]);
        let after = unit_values(&fs, "docker.service", "Unit", "After")
            .unwrap()
            .unwrap();
        assert_eq!(after, ["b c"]);
        assert!(unit_check("u", "After", &after, UnitExpect::Lists, "c").is_ok());
        assert!(unit_check("u", "After", &after, UnitExpect::Lists, "a").is_err());
        assert!(unit_values(&fs, "nope.service", "Unit", "After")
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_command_with_a_forbidden_word_needs_its_units_reason() {
        let words = ["apparmor=unconfined".to_string()];
        let key = "X-Berth-Reason-apparmor";
        let mut fs = MemFs::default();
        fs.file(
            "/usr/lib/systemd/system/docker.service",
            0o644,
            "[Service]\nExecStart=/usr/bin/dockerd\n",
        );
        fs.link("/lib", "usr/lib");
        fs.link(
            "/etc/systemd/system/multi-user.target.wants/docker.service",
            "/usr/lib/systemd/system/docker.service",
        );
        let passed = units_without(&fs, &words, key).unwrap().unwrap();
        assert_eq!(passed, "no unit runs a command with apparmor=unconfined");

        let app = "[Unit]\nDescription=app\n[Service]\nExecStart=/usr/bin/docker run \"--security-opt=apparmor=unconfined\" x\n";
        fs.file("/etc/systemd/system/berth-app-a.service", 0o644, app);
        let failed = units_without(&fs, &words, key).unwrap().unwrap_err();
        assert_eq!(
            failed,
            "/etc/systemd/system/berth-app-a.service runs a command with apparmor=unconfined, \
             and berth-app-a.service gives no reason (X-Berth-Reason-apparmor=)"
        );
        // The reason may come from a drop-in; a drop-in's command is judged against its unit.
        fs.file(
            "/etc/systemd/system/berth-app-a.service.d/reason.conf",
            0o644,
            "[Unit]\nX-Berth-Reason-apparmor=ptraces its workers\n",
        );
        let noted = units_without(&fs, &words, key).unwrap().unwrap();
        assert_eq!(
            noted,
            "berth-app-a.service: apparmor=unconfined, because ptraces its workers"
        );
        fs.file(
            "/usr/lib/systemd/system/docker.service.d/10-run.conf",
            0o644,
            "[Service]\nExecStartPost=/usr/bin/docker run --security-opt apparmor=unconfined x\n",
        );
        let failed = units_without(&fs, &words, key).unwrap().unwrap_err();
        assert!(
            failed.starts_with("/usr/lib/systemd/system/docker.service.d/10-run.conf runs")
                && !failed.contains("berth-app-a"),
            "{failed}"
        );
    }

    #[test]
    fn an_environment_variable_is_found_by_its_prefix() {
        let set = ["A=1 \"container=docker\"".to_string()];
        assert_eq!(
            unit_check(
                "docker.service",
                "Environment",
                &set,
                UnitExpect::LacksPrefix,
                "container="
            ),
            Err("docker.service: Environment sets container=docker".into())
        );
        let unset = ["A=1".to_string()];
        assert!(unit_check(
            "u",
            "Environment",
            &unset,
            UnitExpect::LacksPrefix,
            "container="
        )
        .is_ok());
        assert!(unit_check(
            "u",
            "Environment",
            &[],
            UnitExpect::LacksPrefix,
            "container="
        )
        .is_ok());
    }
}
