//! Stage (b) of `cargo xtask check`: Buildroot's own style checker, `utils/check-package`, over
//! our BR2_EXTERNAL tree, our patches (format-patch form, Signed-off-by, Upstream) and the shell
//! scripts under `board/`.

use std::path::{Path, PathBuf};

use xshell::{cmd, Shell};

use super::files::{files_under, relative, shell_scripts};
use crate::buildroot::Buildroot;

/// The Python modules `utils/check-package` imports, with their Debian packages.
pub const MODULES: &[(&str, &str)] = &[("magic", "python3-magic"), ("flake8", "python3-flake8")];

/// Run check-package with `python` from the checkout `repo`; every finding, as a sentence.
pub fn run(sh: &Shell, python: &str, tree: &Buildroot, repo: &Path) -> Vec<String> {
    let files = match files_to_check(repo) {
        Ok(files) => files,
        Err(err) => return vec![format!("{err:#}")],
    };
    let script = tree.root.join("utils/check-package");
    let file_args = &files;
    let output = match cmd!(sh, "{python} {script} -b {file_args...}")
        .quiet()
        .ignore_status()
        .output()
    {
        Ok(o) => o,
        Err(err) => return vec![format!("could not run {}: {err}", script.display())],
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let findings = findings(&text);
    if findings.is_empty() && !output.status.success() {
        return vec![format!(
            "utils/check-package failed ({}): {}",
            output.status,
            text.trim()
        )];
    }
    if findings.is_empty() {
        println!("[check-package] {} files clean", files.len());
    }
    findings
}

/// Everything under br2-external/, the board scripts and the patches, from the checkout root.
fn files_to_check(repo: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = files_under(&repo.join("br2-external"))?;
    files.extend(shell_scripts(&repo.join("board"))?);
    files.extend(
        files_under(&repo.join("patches"))?
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "patch")),
    );
    Ok(files
        .iter()
        .map(|f| relative(repo, f).to_path_buf())
        .collect())
}

/// check-package prints one `file:line: warning` per finding, then two summary lines.
fn findings(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim_end)
        .filter(|l| {
            !l.is_empty() && !l.ends_with(" lines processed") && !l.ends_with(" warnings generated")
        })
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_check_package_findings() {
        let out = "br2-external/package/x/x.mk:9: remove default value of _SOURCE variable (https://nightly.buildroot.org/#x)\n\
                   129 lines processed\n1 warnings generated\n";
        assert_eq!(
            findings(out),
            vec!["br2-external/package/x/x.mk:9: remove default value of _SOURCE variable (https://nightly.buildroot.org/#x)"]
        );
        assert!(findings("129 lines processed\n0 warnings generated\n").is_empty());
    }
}
