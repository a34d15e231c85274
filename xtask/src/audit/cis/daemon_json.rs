//! `/etc/docker/daemon.json` values against what an item expects.

use super::rules::JsonExpect;

pub(super) fn json_get<'a>(
    json: &'a serde_json::Value,
    dotted: &str,
) -> Option<&'a serde_json::Value> {
    // Keys such as "log-opts" contain no dots; the dot only separates levels.
    dotted.split('.').try_fold(json, |v, k| v.get(k))
}

pub(super) fn json_check(
    json: &serde_json::Value,
    key: &str,
    expect: JsonExpect,
    value: Option<&toml::Value>,
) -> std::result::Result<String, String> {
    let want = value.map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null));
    let got = json_get(json, key);
    let shown = |v: &serde_json::Value| v.to_string();
    let want_text = want.as_ref().map(shown).unwrap_or_default();
    let empty = |v: &serde_json::Value| match v {
        serde_json::Value::Array(a) => a.is_empty(),
        serde_json::Value::Object(o) => o.is_empty(),
        serde_json::Value::String(s) => s.is_empty(),
        serde_json::Value::Null => true,
        _ => false,
    };
    match (expect, got) {
        (JsonExpect::Equals, Some(g)) if Some(g) == want.as_ref() => {
            Ok(format!("{key} = {}", shown(g)))
        }
        (JsonExpect::Equals, Some(g)) => Err(format!(
            "daemon.json sets {key} = {}, not {want_text}",
            shown(g)
        )),
        (JsonExpect::Equals, None) => Err(format!(
            "daemon.json does not set {key} (must be {want_text})"
        )),
        (JsonExpect::AbsentOrEquals, None) => Ok(format!("{key} left at its default")),
        (JsonExpect::AbsentOrEquals, Some(g)) if Some(g) == want.as_ref() => {
            Ok(format!("{key} = {}", shown(g)))
        }
        (JsonExpect::AbsentOrEquals, Some(g)) => Err(format!(
            "daemon.json sets {key} = {}, not {want_text}",
            shown(g)
        )),
        (JsonExpect::NotEquals, Some(g)) if Some(g) == want.as_ref() => {
            Err(format!("daemon.json sets {key} = {}", shown(g)))
        }
        (JsonExpect::NotEquals, g) => Ok(format!(
            "{key} is not {want_text}{}",
            g.map(|g| format!(" ({})", shown(g))).unwrap_or_default()
        )),
        (JsonExpect::Present, Some(g)) if !empty(g) => Ok(format!("{key} = {}", shown(g))),
        (JsonExpect::Present, _) => Err(format!("daemon.json does not set {key}")),
        (JsonExpect::Absent, None) => Ok(format!("{key} not set")),
        (JsonExpect::Absent, Some(g)) => Err(format!("daemon.json sets {key} = {}", shown(g))),
        (JsonExpect::AbsentOrEmpty, Some(g)) if !empty(g) => {
            Err(format!("daemon.json sets {key} = {}", shown(g)))
        }
        (JsonExpect::AbsentOrEmpty, _) => Ok(format!("no {key}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_expectations() {
        let json: serde_json::Value = serde_json::json!({"icc": false, "log-opts": {"max-size": "10m"}, "insecure-registries": []});
        let f = toml::Value::Boolean(false);
        assert!(json_check(&json, "icc", JsonExpect::Equals, Some(&f)).is_ok());
        assert!(json_check(
            &json,
            "icc",
            JsonExpect::Equals,
            Some(&toml::Value::Boolean(true))
        )
        .is_err());
        assert!(json_check(&json, "log-opts.max-size", JsonExpect::Present, None).is_ok());
        assert!(json_check(
            &json,
            "insecure-registries",
            JsonExpect::AbsentOrEmpty,
            None
        )
        .is_ok());
        assert!(json_check(&json, "experimental", JsonExpect::AbsentOrEquals, Some(&f)).is_ok());
        assert!(json_check(&json, "userns-remap", JsonExpect::Present, None).is_err());
    }
}
