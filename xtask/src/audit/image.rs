//! `cargo xtask audit image <output>`: CIS Docker items and ELF hardening of a Buildroot output folder.
//!
//! CIS checks read the EROFS root filesystem image (`images/rootfs.erofs`, else the EROFS at the
//! start of `images/system.img`), because only the image shows the ownership fakeroot gave each
//! file. ELF checks read `target/`, whose file contents are what the image holds, and
//! `build/packages-file-list.txt` for the package that installed each file: without it, every file
//! is judged as built by the project (nothing is waived as prebuilt), and the report says so.
//! The CIS items about a kernel feature's userspace half read the kernel's resolved config
//! (`build/linux-<version>/.config`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use super::exceptions::Exceptions;
use super::report::{self, Finding, Report, Severity, Verdict};
use super::{cis, elf};
use crate::erofs::ErofsImage;
use crate::project::Repo;

#[derive(Args)]
pub struct ImageArgs {
    /// Buildroot output folder (with target/ and images/rootfs.erofs).
    pub output: PathBuf,
    /// EROFS root filesystem image to read (default: `<output>/images/rootfs.erofs`, else
    /// `system.img`, whose EROFS comes before its verity tree).
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ImageArgs, json: bool, repo: &Repo) -> Result<()> {
    let audit = audit_image(repo, &args.output, args.rootfs.as_deref())?;
    audit.emit(args.json || json)
}

#[derive(Debug, Serialize)]
pub struct ElfFile {
    /// Path inside the root filesystem.
    pub path: String,
    #[serde(flatten)]
    pub properties: elf::ElfProperties,
}

pub struct ImageAudit {
    pub cis: Report,
    pub elf: Report,
    pub files: Vec<ElfFile>,
    /// ELF files skipped because the rules do not apply (kernel modules, relocatable objects).
    pub skipped: usize,
    /// The missing file list, when no file could be known as prebuilt.
    pub file_list_missing: Option<PathBuf>,
}

const FIRMWARE_DIRS: &[&str] = &["/lib/firmware/", "/usr/lib/firmware/"];

/// The root filesystem image of a build output: Buildroot's `rootfs.erofs`, else the slot image
/// made from it (the EROFS reader stops where the superblock says the filesystem ends).
pub fn rootfs_image(output: &Path) -> Result<PathBuf> {
    ["rootfs.erofs", crate::release::SYSTEM_IMAGE]
        .iter()
        .map(|n| output.join("images").join(n))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{} holds no images/rootfs.erofs (or system.img): build the image first, or name one with --rootfs",
                output.display()
            )
        })
}

/// Audit a Buildroot output folder with the rule tables and exceptions of `repo`.
pub fn audit_image(repo: &Repo, output: &Path, rootfs: Option<&Path>) -> Result<ImageAudit> {
    let target = output.join("target");
    anyhow::ensure!(
        target.is_dir(),
        "{} is not a Buildroot output folder: it has no target/ folder",
        output.display()
    );
    let image = match rootfs {
        Some(p) => p.to_path_buf(),
        None => rootfs_image(output)?,
    };
    let read = |rel: &str| {
        let path = repo.path(rel);
        std::fs::read_to_string(&path).with_context(|| format!("could not read {}", path.display()))
    };
    let cis_rules = cis::parse_rules(&read(super::tables::CIS_RULES)?)?;
    let elf_rules = elf::parse_rules(&read(super::tables::ELF_RULES)?)?;
    let exceptions_path = repo.path(super::tables::EXCEPTIONS);
    let exceptions = Exceptions::load(&exceptions_path)?;

    let fs = ErofsImage::open(&image)?.with_tools_from(&output.join("host/bin"));
    let kernel = kernel_config(output);
    let cis = cis::audit(
        &fs,
        kernel.as_ref().map_err(Clone::clone),
        &cis_rules,
        &exceptions.cis,
    )
    .with_context(|| format!("with the exceptions of {}", exceptions_path.display()))?;

    let mut elf_report = Report::new(format!("ELF hardening of {}", target.display()));
    for f in config_findings(output, &elf_rules.config)? {
        elf_report.push(f);
    }
    let (files, malformed, skipped) = read_elf_files(&target)?;
    for f in malformed {
        elf_report.push(f);
    }
    let audited: BTreeMap<String, elf::ElfKind> = files
        .iter()
        .map(|f| (f.path.clone(), f.properties.kind))
        .collect();
    let file_list = output.join(elf::prebuilt::FILE_LIST);
    let owners = file_owners(&file_list)?;
    let prebuilt = elf::match_prebuilt(
        &exceptions.elf_prebuilt,
        &elf_rules.rule,
        owners.as_ref(),
        &audited,
    )
    .with_context(|| format!("in {}", exceptions_path.display()))?;
    elf_report.push(provenance(&file_list, owners.is_some(), &prebuilt));
    let waivers = elf::Waivers::match_image(
        &exceptions.elf,
        prebuilt.waived,
        &elf_rules.rule,
        &fs,
        &audited,
    )
    .with_context(|| format!("in {}", exceptions_path.display()))?;
    for f in &files {
        let waived = |p: &str, prop| waivers.reason(p, prop).map(str::to_string);
        for finding in elf::evaluate(&f.path, &f.properties, &elf_rules.rule, &waived, &fs)? {
            elf_report.push(finding);
        }
    }
    Ok(ImageAudit {
        cis,
        elf: elf_report,
        files,
        skipped,
        file_list_missing: owners.is_none().then_some(file_list),
    })
}

/// The kernel configuration Buildroot built the image's kernel with, or why it cannot be read.
fn kernel_config(output: &Path) -> std::result::Result<crate::kconfig::Resolved, String> {
    let read = || -> Result<crate::kconfig::Resolved> {
        let path = super::kernel::buildroot_kernel_config(output)?;
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("could not read {}", path.display()))?;
        crate::kconfig::Resolved::parse(&text, &path.display().to_string())
    };
    read().map_err(|e| format!("{e:#}"))
}

/// The owning package of every target file, or `None` when the output folder has no file list
/// (an image audited without its `build/`).
fn file_owners(file_list: &Path) -> Result<Option<elf::FileOwners>> {
    if !file_list.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(file_list)
        .with_context(|| format!("could not read {}", file_list.display()))?;
    elf::FileOwners::parse(&text, &file_list.display().to_string()).map(Some)
}

/// What the report says about prebuilt files: how many each policy judged, or that none could be
/// known (a warning: the toolchain's libraries then fail on what their vendor left out).
fn provenance(file_list: &Path, known: bool, prebuilt: &elf::Prebuilt) -> Finding {
    let (severity, verdict, detail) = if known {
        let matched: Vec<String> = prebuilt
            .matched
            .iter()
            .map(|(policy, count)| format!("[[elf_prebuilt]] {policy}: {count} audited file(s)"))
            .collect();
        (Severity::Info, Verdict::Pass, matched.join("; "))
    } else {
        (
            Severity::Recommended,
            Verdict::Fail,
            format!(
                "{} is missing: every file is judged as built by the project, nothing is waived \
                 as prebuilt by [[elf_prebuilt]]",
                file_list.display()
            ),
        )
    };
    Finding {
        subject: "prebuilt files".into(),
        rule: "owning package of each file, from Buildroot's packages-file-list.txt".into(),
        source: "elf-hardening".into(),
        severity,
        verdict,
        detail,
    }
}

/// Every program and shared library under `target` (by its path in the image, sorted), a
/// failed finding for each ELF file that cannot be read as one, and how many ELF files the
/// rules do not apply to (kernel modules, relocatable objects).
fn read_elf_files(target: &Path) -> Result<(Vec<ElfFile>, Vec<Finding>, usize)> {
    let mut files = Vec::new();
    let mut malformed = Vec::new();
    let mut skipped = 0;
    let progress = indicatif::ProgressBar::new_spinner();
    progress.set_message("reading ELF files");
    // Symbolic links are not followed: they point at files listed anyway.
    for entry in walkdir::WalkDir::new(target).sort_by_file_name() {
        let entry = entry.with_context(|| format!("could not list {}", target.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        progress.tick();
        let path = entry.path();
        let rel = format!("/{}", path.strip_prefix(target).unwrap_or(path).display());
        // Firmware is loaded into other processors, never run by Linux on this CPU.
        if FIRMWARE_DIRS.iter().any(|d| rel.starts_with(d)) {
            continue;
        }
        let mut head = [0u8; 4];
        {
            use std::io::Read;
            let mut f = std::fs::File::open(path)
                .with_context(|| format!("could not open {}", path.display()))?;
            if f.read(&mut head).unwrap_or(0) < 4 || !elf::is_elf(&head) {
                continue;
            }
        }
        let data =
            std::fs::read(path).with_context(|| format!("could not read {}", path.display()))?;
        match elf::analyze(&data) {
            Ok(props)
                if matches!(
                    props.kind,
                    elf::ElfKind::Executable | elf::ElfKind::SharedLibrary
                ) =>
            {
                files.push(ElfFile {
                    path: rel,
                    properties: props,
                })
            }
            Ok(_) => skipped += 1,
            Err(err) => malformed.push(Finding {
                subject: rel,
                rule: "well-formed ELF".into(),
                source: "elf-hardening".into(),
                severity: Severity::Required,
                verdict: Verdict::Fail,
                detail: format!("{err:#}"),
            }),
        }
    }
    progress.finish_and_clear();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((files, malformed, skipped))
}

/// The `[[config]]` rules judged on `<output>/.config`, the configuration Buildroot built with.
fn config_findings(output: &Path, rules: &[elf::ConfigRule]) -> Result<Vec<Finding>> {
    let path = output.join(".config");
    if !path.is_file() {
        return Ok(rules
            .iter()
            .map(|rule| Finding {
                subject: "build configuration".into(),
                rule: rule.title.clone(),
                source: rule.source.clone(),
                severity: rule.severity,
                verdict: Verdict::Fail,
                detail: format!("{} is missing: nothing proves it", path.display()),
            })
            .collect());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("could not read {}", path.display()))?;
    let settings = crate::kconfig::parse(&text, &path.display().to_string())?;
    Ok(elf::evaluate_config(rules, &settings))
}

impl ImageAudit {
    pub fn passed(&self) -> bool {
        self.cis.passed() && self.elf.passed()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let mut elf = self.elf.to_json();
        elf["files"] = serde_json::to_value(&self.files).unwrap_or_default();
        elf["skipped_relocatable"] = self.skipped.into();
        serde_json::json!({ "passed": self.passed(), "cis": self.cis.to_json(), "elf": elf })
    }

    /// The CIS table, then one row per ELF file with its properties and what failed.
    pub fn render_table(&self) -> String {
        let mut out = self.cis.render_table();
        out.push_str(&format!("\n{}\n", self.elf.title));
        let width = self
            .files
            .iter()
            .map(|f| f.path.len())
            .max()
            .unwrap_or(4)
            .clamp(4, 56);
        out.push_str(&format!(
            "  {:<width$}  {:<7} {:<4} {:<7} {:<3} {:<6} {:<7} {:<5} {:<7} {:<7} {:<5} {:<6}  {}\n",
            "file",
            "kind",
            "pie",
            "relro",
            "nx",
            "canary",
            "fortify",
            "rpath",
            "runpath",
            "textrel",
            "strip",
            "go",
            "result"
        ));
        let tri = |t: elf::Tri| match t {
            elf::Tri::Yes => "yes",
            elf::Tri::No => "no",
            elf::Tri::NotApplicable => "n/a",
        };
        let yn = |b: bool| if b { "yes" } else { "no" };
        for f in &self.files {
            let p = &f.properties;
            let result: Vec<String> = self
                .elf
                .findings
                .iter()
                .filter(|x| x.subject == f.path && x.verdict != Verdict::Pass)
                .map(|x| format!("{} {}", x.mark(), short(&x.rule)))
                .collect();
            let kind = match p.kind {
                elf::ElfKind::Executable => "exec",
                elf::ElfKind::SharedLibrary => "lib",
                _ => "other",
            };
            let go = match (p.go, p.cgo) {
                (true, true) => "cgo",
                (true, false) => "go",
                _ => "-",
            };
            out.push_str(&format!(
                "  {:<width$}  {:<7} {:<4} {:<7} {:<3} {:<6} {:<7} {:<5} {:<7} {:<7} {:<5} {:<6}  {}\n",
                f.path,
                kind,
                format!("{:?}", p.pie).to_lowercase(),
                format!("{:?}", p.relro).to_lowercase(),
                yn(p.nx),
                tri(p.canary),
                tri(p.fortify),
                yn(!p.rpath.is_empty()),
                yn(!p.runpath.is_empty()),
                yn(p.textrel),
                yn(p.stripped),
                go,
                if result.is_empty() { "pass".to_string() } else { result.join(", ") }
            ));
        }
        for f in self
            .elf
            .findings
            .iter()
            .filter(|f| !self.files.iter().any(|x| x.path == f.subject))
        {
            out.push_str(&format!(
                "  {:<width$}  {} {}: {}\n",
                f.subject,
                f.mark(),
                f.rule,
                f.detail
            ));
        }
        let t = self.elf.totals();
        out.push_str(&format!(
            "ELF files: {} audited, {} relocatable skipped; rules passed {}, failed {} (required {}), exceptions {}\n",
            self.files.len(),
            self.skipped,
            t.passed,
            t.failed,
            t.failed_required,
            t.exceptions
        ));
        out.push_str(&format!(
            "Image audit: {}\n",
            if self.passed() { "PASS" } else { "FAIL" }
        ));
        out
    }

    /// Print, then fail naming every CIS item and ELF file with a required failure.
    pub fn emit(&self, json: bool) -> Result<()> {
        report::print(json, || self.to_json(), || self.render_table())?;
        self.verdict()
    }

    pub fn verdict(&self) -> Result<()> {
        let failed = |r: &Report| -> Vec<String> {
            let mut v: Vec<String> = r
                .findings
                .iter()
                .filter(|f| f.verdict == Verdict::Fail && f.severity == Severity::Required)
                .map(|f| f.subject.clone())
                .collect();
            v.dedup();
            v
        };
        let (cis, elf) = (failed(&self.cis), failed(&self.elf));
        anyhow::ensure!(
            cis.is_empty() && elf.is_empty(),
            "image audit failed: {}{}{}",
            if cis.is_empty() {
                String::new()
            } else {
                format!("CIS items not met: {}", cis.join(", "))
            },
            if cis.is_empty() || elf.is_empty() {
                ""
            } else {
                "; "
            },
            match (&self.file_list_missing, elf.is_empty()) {
                (_, true) => String::new(),
                (None, false) =>
                    format!("ELF files missing required hardening: {}", elf.join(", ")),
                (Some(list), false) => format!(
                    "ELF files missing required hardening: {} ({} is missing, so every file was \
                     judged as built by the project, the toolchain's libraries included)",
                    elf.join(", "),
                    list.display()
                ),
            },
        );
        Ok(())
    }
}

/// The rule title up to its first colon: "PIE", "full RELRO", ...
fn short(rule: &str) -> &str {
    rule.split(':').next().unwrap_or(rule)
}
