//! CycloneDX SBOM and `make legal-info` bundle for the image, listed in SHA256SUMS.
//!
//! The SBOM is Buildroot's own: `make show-info | utils/generate-cyclonedx` (CycloneDX 1.6 with
//! CPEs, patches and the CVEs they fix). That script decides whether a license is an SPDX id from
//! CycloneDX's SPDX schema, which it downloads into `$BR2_DL_DIR/cyclonedx/` on first use and
//! cannot fetch offline. Berth pins that file by sha256 and fetches it itself (or finds it in the
//! download folder, which CI caches), so the script never touches the network and the SBOM
//! cannot change because the schema behind a URL did.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use crate::buildroot::Buildroot;
use crate::project::Repo;
use crate::release::{LEGAL_INFO_FILE, SBOM_FILE};
use crate::{reproducible, util};

/// What generate-cyclonedx in the pinned Buildroot downloads (tag 1.6 of the specification).
pub const SPDX_SCHEMA_URL: &str =
    "https://raw.githubusercontent.com/CycloneDX/specification/1.6/schema/spdx.schema.json";
/// sha256 of that file at tag 1.6 (commit 55343ba19dee1785acf1ce9191540d5fd7b590db).
pub const SPDX_SCHEMA_SHA256: &str =
    "baa9d3bd1ed57b6751b0887edead6b5063ff53ff7429cf85d476c6c94af0166e";
/// Where generate-cyclonedx looks for it, relative to the download folder.
pub const SPDX_SCHEMA_IN_DL: &str = "cyclonedx/spdx-1.6.schema.json";

/// Write the SBOM and the license bundle into `<output>/images/`; return the files written.
/// `dl` is the build's download folder, the one `make` got as `BR2_DL_DIR`.
pub fn write_sbom_and_legal_info(
    repo: &Repo,
    br: &Buildroot,
    sh: &Shell,
    output: &Path,
    dl: &Path,
) -> Result<Vec<PathBuf>> {
    let images = output.join("images");
    std::fs::create_dir_all(&images)
        .with_context(|| format!("could not create {}", images.display()))?;
    ensure_spdx_schema(sh, dl)?;
    let build = BuildOutput {
        repo,
        br,
        sh,
        output,
        dl,
    };
    let sbom = images.join(SBOM_FILE);
    build.write_sbom(&sbom)?;
    let legal = images.join(LEGAL_INFO_FILE);
    build.write_legal_info(&legal)?;
    Ok(vec![sbom, legal])
}

/// A configured Buildroot output folder with the download folder of its sources: what the SBOM
/// and the license bundle are both made from.
struct BuildOutput<'a> {
    repo: &'a Repo,
    br: &'a Buildroot,
    sh: &'a Shell,
    output: &'a Path,
    dl: &'a Path,
}

/// Is this the pinned schema? Pure, so the refusal message is tested.
pub fn check_spdx_schema(bytes: &[u8], path: &Path) -> Result<()> {
    let digest = util::sha256_hex(bytes);
    if digest != SPDX_SCHEMA_SHA256 {
        bail!(
            "{} has sha256 {digest}, not the pinned {SPDX_SCHEMA_SHA256} of {SPDX_SCHEMA_URL}; \
             remove it so Berth fetches the right one",
            path.display()
        );
    }
    Ok(())
}

/// Make sure the pinned schema sits where generate-cyclonedx looks, fetching it once if needed.
pub fn ensure_spdx_schema(sh: &Shell, dl: &Path) -> Result<()> {
    let path = dl.join(SPDX_SCHEMA_IN_DL);
    if let Ok(bytes) = std::fs::read(&path) {
        return check_spdx_schema(&bytes, &path);
    }
    let dir = path.parent().expect("the schema path has a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("could not create {}", dir.display()))?;
    let partial = path.with_extension("json.partial");
    let fetched = cmd!(sh, "curl -fsSL --retry 3 -o {partial} {SPDX_SCHEMA_URL}")
        .quiet()
        .run();
    if let Err(err) = fetched {
        let _ = std::fs::remove_file(&partial);
        bail!(
            "the SBOM needs CycloneDX's SPDX license list and it could not be downloaded ({err}); \
             offline, put {SPDX_SCHEMA_URL} (sha256 {SPDX_SCHEMA_SHA256}) at {}",
            path.display()
        );
    }
    let bytes =
        std::fs::read(&partial).with_context(|| format!("could not read {}", partial.display()))?;
    if let Err(err) = check_spdx_schema(&bytes, &partial) {
        let _ = std::fs::remove_file(&partial);
        return Err(err);
    }
    std::fs::rename(&partial, &path)
        .with_context(|| format!("could not move the schema to {}", path.display()))
}

impl BuildOutput<'_> {
    /// `make show-info | utils/generate-cyclonedx` into `dest`.
    fn write_sbom(&self, dest: &Path) -> Result<()> {
        let (sh, output) = (self.sh, self.output);
        let info = self
            .br
            .make(sh, output, &["-s", "show-info"])
            .quiet()
            .read()
            .context("`make show-info` failed in the configured output folder")?;
        serde_json::from_str::<serde_json::Value>(&info)
            .context("`make show-info` did not print valid JSON")?;
        let info_file = output.join("show-info.json");
        std::fs::write(&info_file, &info)
            .with_context(|| format!("could not write {}", info_file.display()))?;
        let script = self.br.root.join("utils/generate-cyclonedx");
        let version = berth_version(self.repo, sh)?;
        let partial = dest.with_extension("json.partial");
        cmd!(
            sh,
            "python3 {script} -i {info_file} -o {partial} --project-name berth --project-version {version}"
        )
        .env("BR2_DL_DIR", self.dl)
        // The script runs `make -C <buildroot> print-version`; O= on make's command line (which
        // MAKEFLAGS counts as) keeps that make from creating output/ inside the Buildroot tree.
        .env("MAKEFLAGS", format!("O={}", output.display()))
        .quiet()
        .run()
        .context("Buildroot's utils/generate-cyclonedx could not write the SBOM")?;
        let text = std::fs::read_to_string(&partial)
            .with_context(|| format!("could not read {}", partial.display()))?;
        check_sbom(&text)?;
        std::fs::rename(&partial, dest)
            .with_context(|| format!("could not write {}", dest.display()))
    }

    /// `make legal-info`, then a tarball that depends only on its contents and SOURCE_DATE_EPOCH.
    fn write_legal_info(&self, dest: &Path) -> Result<()> {
        let (sh, output) = (self.sh, self.output);
        let env = reproducible::build_env(self.repo.root())?;
        self.br
            .make(sh, output, &["legal-info"])
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("BR2_DL_DIR", self.dl)
            .quiet()
            .ignore_stdout()
            .run()
            .context(
                "`make legal-info` failed (it needs every package's sources in the download folder)",
            )?;
        let epoch = reproducible::source_date_epoch(self.repo.root())?;
        let tar = dest.with_extension(""); // legal-info.tar
        let args = tar_args(epoch);
        cmd!(sh, "tar {args...} -C {output} -cf {tar} legal-info")
            .quiet()
            .run()
            .context("could not pack legal-info")?;
        let _ = std::fs::remove_file(dest);
        cmd!(sh, "gzip -n -f {tar}")
            .quiet()
            .run()
            .context("could not compress legal-info.tar")?;
        Ok(())
    }
}

/// A CycloneDX 1.6 document with components. Pure.
pub fn check_sbom(text: &str) -> Result<()> {
    let doc: serde_json::Value = serde_json::from_str(text).context("the SBOM is not JSON")?;
    if doc["bomFormat"] != "CycloneDX" || doc["specVersion"] != "1.6" {
        bail!(
            "the SBOM is not CycloneDX 1.6 (bomFormat {}, specVersion {})",
            doc["bomFormat"],
            doc["specVersion"]
        );
    }
    match doc["components"].as_array() {
        Some(c) if !c.is_empty() => Ok(()),
        _ => bail!("the SBOM lists no components"),
    }
}

/// `git describe` of the Berth checkout: the SBOM's project version.
fn berth_version(repo: &Repo, sh: &Shell) -> Result<String> {
    let repo = repo.root();
    cmd!(sh, "git -C {repo} describe --tags --always --dirty")
        .quiet()
        .read()
        .with_context(|| {
            format!(
                "could not describe the Berth checkout {} with git",
                repo.display()
            )
        })
}

/// GNU tar options for an archive that is the same on every build: sorted names, one time, no
/// owners, no pax headers with access/change times. Pure.
pub fn tar_args(epoch: u64) -> Vec<String> {
    vec![
        "--format=gnu".into(),
        "--sort=name".into(),
        format!("--mtime=@{epoch}"),
        "--owner=0".into(),
        "--group=0".into(),
        "--numeric-owner".into(),
        "--mode=go-w".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_schema_that_is_not_the_pinned_one() {
        let err = format!(
            "{:#}",
            check_spdx_schema(br#"{"enum": ["MIT"]}"#, Path::new("/dl/s.json")).unwrap_err()
        );
        assert!(
            err.contains("/dl/s.json") && err.contains(SPDX_SCHEMA_SHA256),
            "{err}"
        );
    }

    #[test]
    fn accepts_only_cyclonedx_with_components() {
        check_sbom(
            r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[{"name":"busybox"}]}"#,
        )
        .unwrap();
        assert!(
            check_sbom(r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[]}"#).is_err()
        );
        assert!(check_sbom(r#"{"bomFormat":"SPDX"}"#).is_err());
        assert!(check_sbom("not json").is_err());
    }

    #[test]
    fn tarball_is_made_deterministic() {
        let args = tar_args(1_700_000_000);
        for want in [
            "--sort=name",
            "--mtime=@1700000000",
            "--owner=0",
            "--numeric-owner",
        ] {
            assert!(
                args.iter().any(|a| a == want),
                "{want} missing from {args:?}"
            );
        }
    }

    /// Two tarballs of the same tree made at different times and with different file times
    /// are identical.
    #[test]
    fn legal_info_archive_depends_only_on_content() {
        let sh = Shell::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut digests = Vec::new();
        for (n, stamp) in ["@1600000000", "@1650000000"].iter().enumerate() {
            let out = dir.path().join(format!("o{n}"));
            let tree = out.join("legal-info/licenses/busybox");
            std::fs::create_dir_all(&tree).unwrap();
            std::fs::write(tree.join("LICENSE"), "GPL-2.0\n").unwrap();
            std::fs::write(out.join("legal-info/manifest.csv"), "busybox,1.37\n").unwrap();
            cmd!(sh, "touch -d {stamp} {tree}/LICENSE").run().unwrap();
            let tar = out.join("legal-info.tar");
            let args = tar_args(1_700_000_000);
            cmd!(sh, "tar {args...} -C {out} -cf {tar} legal-info")
                .run()
                .unwrap();
            cmd!(sh, "gzip -n -f {tar}").run().unwrap();
            digests.push(util::sha256_file(&out.join("legal-info.tar.gz")).unwrap());
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        assert_eq!(digests[0], digests[1]);
    }
}

/// The real generate-cyclonedx on the real defconfig (needs BERTH_BUILDROOT; the schema is a
/// stand-in, as in Buildroot's own test of the script, since only its `enum` is read).
#[cfg(test)]
mod buildroot_tests {
    use super::*;

    #[test]
    fn sbom_from_the_berth_defconfig() {
        let Some(tree) = std::env::var_os("BERTH_BUILDROOT") else {
            crate::util::skip(
                "sbom_from_the_berth_defconfig",
                "BERTH_BUILDROOT is not set (a tree of the pinned Buildroot needed)",
            );
            return;
        };
        let sh = Shell::new().unwrap();
        let repo = Repo::checkout();
        let br = crate::buildroot::verify(
            &sh,
            &repo,
            Path::new(&tree),
            crate::buildroot::Origin::Environment,
        )
        .unwrap();
        let work = tempfile::tempdir().unwrap();
        let output = work.path().join("output");
        let dl = work.path().join("dl");
        std::fs::create_dir_all(dl.join("cyclonedx")).unwrap();
        std::fs::write(
            dl.join(SPDX_SCHEMA_IN_DL),
            r#"{"enum": ["MIT", "Apache-2.0", "GPL-2.0"]}"#,
        )
        .unwrap();
        let defconfig = repo.path("configs/berth_odroid_xu4_defconfig");
        br.load_defconfig(&sh, &output, &defconfig).unwrap();
        let build = BuildOutput {
            repo: &repo,
            br: &br,
            sh: &sh,
            output: &output,
            dl: &dl,
        };
        let sbom = work.path().join(SBOM_FILE);
        build.write_sbom(&sbom).unwrap();
        let text = std::fs::read_to_string(&sbom).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        let names: Vec<&str> = doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        for want in ["docker-engine", "containerd", "runc", "linux", "uboot"] {
            assert!(names.contains(&want), "the SBOM has no {want}: {names:?}");
        }
        assert_eq!(doc["metadata"]["component"]["name"], "berth");
        // Same input, same SBOM.
        let again = work.path().join("again.json");
        build.write_sbom(&again).unwrap();
        assert_eq!(
            std::fs::read(&sbom).unwrap(),
            std::fs::read(&again).unwrap()
        );
    }
}
