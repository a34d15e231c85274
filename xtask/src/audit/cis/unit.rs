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
    }
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
}
