//! The update state of a running twin (pure): what `rauc status` says of the slots, and the
//! boot counters as `fw_printenv` reads them from the newer copy of the boot state.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaucState {
    /// The bootname of the slot running now (`A` or `B`).
    pub booted: String,
    /// The bootname of the slot U-Boot tries first.
    pub primary: String,
    /// bootname → RAUC's boot status of that slot (`good` or `bad`).
    pub boot_status: BTreeMap<String, String>,
    /// BOOT_ORDER, BOOT_A_LEFT and BOOT_B_LEFT as fw_printenv reads them (the newer copy).
    pub env: BTreeMap<String, String>,
}

impl RaucState {
    /// From `rauc status --output-format=shell` (the one machine format a RAUC built without
    /// json-glib prints, as Berth's is) and `fw_printenv`.
    pub fn parse(shell: &str, env: &str) -> Result<RaucState> {
        let vars: BTreeMap<&str, String> = shell
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k, v.trim().trim_matches('\'').to_string()))
            .collect();
        let get = |k: &str| vars.get(k).cloned().unwrap_or_default();
        let booted = get("RAUC_SYSTEM_BOOTED_BOOTNAME");
        ensure!(
            !booted.is_empty(),
            "rauc status names no booted slot:\n{shell}"
        );
        let names: Vec<String> = get("RAUC_SYSTEM_SLOTS")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let indices: Vec<String> = get("RAUC_SLOTS")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let primary_slot = get("RAUC_BOOT_PRIMARY");
        let mut state = RaucState {
            booted,
            ..RaucState::default()
        };
        for (name, index) in names.iter().zip(&indices) {
            let bootname = get(&format!("RAUC_SLOT_BOOTNAME_{index}"));
            if *name == primary_slot {
                state.primary = bootname.clone();
            }
            let status = get(&format!("RAUC_SLOT_BOOT_STATUS_{index}"));
            if !bootname.is_empty() && !status.is_empty() {
                state.boot_status.insert(bootname, status);
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
            "booted {}, primary {}, boot status {:?}, boot state {:?}",
            self.booted, self.primary, self.boot_status, self.env
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As RAUC 1.13 prints it (`rauc status --output-format=shell`), B booted after an update.
    const SHELL: &str = "RAUC_SYSTEM_COMPATIBLE='berth-odroid-xu4'
RAUC_SYSTEM_VARIANT=''
RAUC_SYSTEM_BOOTED_BOOTNAME='B'
RAUC_BOOT_PRIMARY='rootfs.1'
RAUC_SYSTEM_SLOTS='rootfs.0 rootfs.1'
RAUC_SLOTS='1 2'
RAUC_SLOT_STATE_1='inactive'
RAUC_SLOT_CLASS_1='rootfs'
RAUC_SLOT_DEVICE_1='/dev/disk/by-partuuid/be27d0c4-02'
RAUC_SLOT_TYPE_1='raw'
RAUC_SLOT_BOOTNAME_1='A'
RAUC_SLOT_BOOT_STATUS_1='good'
RAUC_SLOT_STATE_2='booted'
RAUC_SLOT_BOOTNAME_2='B'
RAUC_SLOT_BOOT_STATUS_2='bad'
";

    #[test]
    fn rauc_shell_output_and_fw_printenv_give_the_booted_and_primary_slots_and_counters() {
        let s = RaucState::parse(
            SHELL,
            "BOOT_A_LEFT=3\nBOOT_B_LEFT=0\nBOOT_ORDER=B A\nother=1\n",
        )
        .unwrap();
        assert_eq!(s.booted, "B");
        assert_eq!(s.primary, "B");
        assert_eq!(s.boot_status["A"], "good");
        assert_eq!(s.boot_status["B"], "bad");
        assert_eq!(s.var("BOOT_ORDER"), "B A");
        assert_eq!(s.var("BOOT_B_LEFT"), "0");
        assert!(!s.env.contains_key("other"));
    }

    #[test]
    fn output_naming_no_booted_slot_is_an_error() {
        assert!(RaucState::parse("rauc: D-Bus error", "").is_err());
    }
}
