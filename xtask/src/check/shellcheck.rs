//! Stage (c) of `cargo xtask check`: `shellcheck` on every shell script of the checkout.

use std::path::{Path, PathBuf};

use xshell::{cmd, Shell};

use super::files::{relative, shell_scripts};

/// Run shellcheck from the checkout `repo`; every finding, as shellcheck's gcc-style line.
pub fn run(sh: &Shell, repo: &Path) -> Vec<String> {
    let scripts = match shell_scripts(repo) {
        Ok(s) => s,
        Err(err) => return vec![format!("{err:#}")],
    };
    if scripts.is_empty() {
        println!("[shellcheck] no shell scripts found");
        return Vec::new();
    }
    let files: Vec<PathBuf> = scripts
        .iter()
        .map(|f| relative(repo, f).to_path_buf())
        .collect();
    let file_args = &files;
    let output = match cmd!(
        sh,
        "shellcheck --external-sources --format=gcc {file_args...}"
    )
    .quiet()
    .ignore_status()
    .output()
    {
        Ok(o) => o,
        Err(err) => return vec![format!("could not run shellcheck: {err}")],
    };
    let findings: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect();
    if findings.is_empty() && !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return vec![format!(
            "shellcheck failed ({}): {}",
            output.status,
            stderr.trim()
        )];
    }
    if findings.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        println!(
            "[shellcheck] {} scripts clean: {}",
            files.len(),
            names.join(", ")
        );
    }
    findings
}
