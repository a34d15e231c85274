//! The update state of a running twin (pure): what `rauc status` says of the slots, and the
//! boot counters in uboot.env as `fw_printenv` reads them.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaucState {
    /// The bootname of the slot running now (`A` or `B`).
    pub booted: String,
    /// The bootname of the slot U-Boot tries first.
    pub primary: String,
    /// bootname → RAUC's boot status of that slot (`good` or `bad`).
    pub boot_status: BTreeMap<String, String>,
    /// BOOT_ORDER, BOOT_A_LEFT and BOOT_B_LEFT as uboot.env holds them.
    pub env: BTreeMap<String, String>,
}

impl RaucState {
    /// From `rauc status --detailed --output-format=json` and `fw_printenv`.
    pub fn parse(json: &str, env: &str) -> Result<RaucState> {
        let v: serde_json::Value =
            serde_json::from_str(json).context("rauc status did not print JSON")?;
        let mut state = RaucState {
            booted: v["booted"].as_str().unwrap_or_default().to_string(),
            ..RaucState::default()
        };
        let primary_slot = v["boot_primary"].as_str().unwrap_or_default();
        for entry in v["slots"]
            .as_array()
            .context("rauc status lists no slots")?
        {
            let Some((name, slot)) = entry.as_object().and_then(|o| o.iter().next()) else {
                continue;
            };
            let bootname = slot["bootname"].as_str().unwrap_or_default().to_string();
            if name == primary_slot {
                state.primary = bootname.clone();
            }
            if let Some(status) = slot["boot_status"].as_str() {
                state.boot_status.insert(bootname, status.to_string());
            }
        }
        state.env = env
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.starts_with("BOOT_"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(state)
    }

    pub fn var(&self, name: &str) -> &str {
        self.env.get(name).map_or("", String::as_str)
    }

    /// One line for a failure's message.
    pub fn describe(&self) -> String {
        format!(
            "booted {}, primary {}, boot status {:?}, uboot.env {:?}",
            self.booted, self.primary, self.boot_status, self.env
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rauc_json_and_fw_printenv_give_the_booted_and_primary_slots_and_counters() {
        let json = r#"{"compatible":"berth-odroid-xu4","variant":"","booted":"B","boot_primary":"rootfs.1",
            "slots":[{"rootfs.0":{"class":"rootfs","bootname":"A","state":"inactive","boot_status":"good"}},
                     {"rootfs.1":{"class":"rootfs","bootname":"B","state":"booted","boot_status":"good"}}]}"#;
        let s = RaucState::parse(
            json,
            "BOOT_A_LEFT=3\nBOOT_B_LEFT=3\nBOOT_ORDER=B A\nother=1\n",
        )
        .unwrap();
        assert_eq!(s.booted, "B");
        assert_eq!(s.primary, "B");
        assert_eq!(s.boot_status["A"], "good");
        assert_eq!(s.var("BOOT_ORDER"), "B A");
        assert_eq!(s.var("BOOT_A_LEFT"), "3");
        assert!(!s.env.contains_key("other"));
    }

    #[test]
    fn output_that_is_not_json_is_an_error() {
        assert!(RaucState::parse("rauc: D-Bus error", "").is_err());
    }
}
