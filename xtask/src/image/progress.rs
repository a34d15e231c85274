//! Following a Buildroot build from its output: every package step prints
//! `>>> <package> <version> <step>` (`support/misc/utils.mk`, `MESSAGE`), with an empty package and
//! version for global steps (`>>>   Finalizing target directory`) and an empty version for virtual
//! packages (`>>> toolchain  Extracting`). Pure: lines in, counts and names out.

use std::collections::{BTreeSet, VecDeque};

/// One `>>>` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `None` for a global step (finalizing, root filesystem images, post-image script).
    pub package: Option<String>,
    pub version: String,
    pub step: String,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.package, self.version.is_empty()) {
            (Some(p), false) => write!(f, "{p} {}: {}", self.version, self.step),
            (Some(p), true) => write!(f, "{p}: {}", self.step),
            (None, _) => f.write_str(&self.step),
        }
    }
}

/// Remove terminal escape sequences (Buildroot wraps `>>>` lines in `tput smso` / `sgr0`).
pub fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        match chars.next() {
            // CSI: parameters, then one final byte in '@'..='~'.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // Character set selection, e.g. ESC ( B.
            Some('(' | ')') => {
                chars.next();
            }
            _ => {}
        }
    }
    out
}

/// Parse one line of build output; `None` unless it is a `>>>` step line.
pub fn parse_step(line: &str) -> Option<Step> {
    let clean = strip_escapes(line);
    let rest = clean.trim_end().strip_prefix(">>> ")?;
    let mut fields = rest.splitn(3, ' ');
    let package = fields.next()?.to_string();
    let version = fields.next()?.to_string();
    let step = fields.next()?.trim().to_string();
    if step.is_empty() {
        return None;
    }
    Some(Step {
        package: (!package.is_empty()).then_some(package),
        version,
        step,
    })
}

/// Buildroot's per-step stamp files and the step each one finishes.
const STAMPS: &[(&str, &str)] = &[
    ("downloaded", "Downloading"),
    ("actual_downloaded", "Downloading"),
    ("extracted", "Extracting"),
    ("rsynced", "Syncing from source dir"),
    ("patched", "Patching"),
    ("configured", "Configuring"),
    ("built", "Building"),
    ("host_installed", "Installing to host directory"),
    ("staging_installed", "Installing to staging directory"),
    ("images_installed", "Installing to images directory"),
    ("target_installed", "Installing to target"),
    ("installed", "Installing"),
];

/// The package build folder and step of a failed stamp target, from make's error line
/// `make: *** [package/pkg-generic.mk:179: /o/build/host-m4-1.4.21/.stamp_downloaded] Error 1`.
/// More reliable than the last `>>>` line: a step may fail before printing one (e.g. a corrupt
/// file already in the download cache is fetched again silently).
pub fn failed_stamp(line: &str) -> Option<(String, &'static str)> {
    let target = line.split("*** [").nth(1)?.split(']').next()?;
    let path = target.rsplit(": ").next()?;
    let (dir, stamp) = path.rsplit_once("/.stamp_")?;
    let step = STAMPS.iter().find(|(name, _)| *name == stamp)?.1;
    Some((dir.to_string(), step))
}

/// Packages done out of the total, and the step in progress.
#[derive(Debug)]
pub struct Tracker {
    total: usize,
    built_before: BTreeSet<String>,
    started: BTreeSet<String>,
    current: Option<Step>,
    /// The first failed stamp make reported (later ones are make unwinding).
    failed: Option<(String, &'static str)>,
}

impl Tracker {
    /// `total`: packages in this build (`show-info` minus root filesystems); `built_before`: those
    /// already installed by an earlier run, which make will not print again.
    pub fn new(total: usize, built_before: impl IntoIterator<Item = String>) -> Self {
        Tracker {
            total,
            built_before: built_before.into_iter().collect(),
            started: BTreeSet::new(),
            current: None,
            failed: None,
        }
    }

    /// Take one output line; returns true when it was a step line (the display should update).
    pub fn feed(&mut self, line: &str) -> bool {
        if self.failed.is_none() {
            self.failed = failed_stamp(line);
        }
        let Some(step) = parse_step(line) else {
            return false;
        };
        if let Some(package) = &step.package {
            if !self.built_before.contains(package) {
                self.started.insert(package.clone());
            }
        }
        self.current = Some(step);
        true
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Buildroot builds one package at a time (no per-package directories), so every started
    /// package but the one in progress is finished; after a global step, all started ones are.
    pub fn done(&self) -> usize {
        let in_progress = match &self.current {
            Some(Step {
                package: Some(p), ..
            }) => usize::from(self.started.contains(p)),
            _ => 0,
        };
        (self.built_before.len() + self.started.len() - in_progress).min(self.total)
    }

    pub fn current(&self) -> Option<&Step> {
        self.current.as_ref()
    }

    /// Build folder (as make printed it) and step of the stamp whose recipe failed, if any.
    pub fn failed(&self) -> Option<(&str, &'static str)> {
        self.failed
            .as_ref()
            .map(|(dir, step)| (dir.as_str(), *step))
    }
}

/// The last `capacity` lines of output, for the failure report.
#[derive(Debug)]
pub struct Tail {
    capacity: usize,
    lines: VecDeque<String>,
}

impl Tail {
    pub fn new(capacity: usize) -> Self {
        Tail {
            capacity,
            lines: VecDeque::with_capacity(capacity),
        }
    }

    pub fn push(&mut self, line: &str) {
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(strip_escapes(line));
    }

    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }
}

/// What to tell the user when `make` fails. `failed` is the package and step of the failed
/// stamp, when make named one; otherwise the last `>>>` line tells.
pub fn failure_report(
    failed: Option<(&str, &str)>,
    current: Option<&Step>,
    tail: &Tail,
    log: &std::path::Path,
    status: &str,
) -> String {
    let during = match (failed, current) {
        (Some((package, step)), _) => format!("in package {package}, step \"{step}\""),
        (
            None,
            Some(
                step @ Step {
                    package: Some(_), ..
                },
            ),
        ) => format!("while building {step}"),
        (None, Some(step)) => format!("during \"{}\"", step.step),
        (None, None) => "before any package step started".to_string(),
    };
    let mut report =
        format!("the Buildroot build failed ({status}) {during}.\nLast lines of output:\n");
    for line in tail.lines() {
        report.push_str("  ");
        report.push_str(line);
        report.push('\n');
    }
    report.push_str(&format!("Full log: {}", log.display()));
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(p: Option<&str>, v: &str, s: &str) -> Step {
        Step {
            package: p.map(str::to_owned),
            version: v.into(),
            step: s.into(),
        }
    }

    #[test]
    fn parses_package_virtual_and_global_steps() {
        assert_eq!(
            parse_step(">>> host-tar 1.35 Downloading"),
            Some(step(Some("host-tar"), "1.35", "Downloading"))
        );
        assert_eq!(
            parse_step(">>> linux 6.12.91 Installing to target"),
            Some(step(Some("linux"), "6.12.91", "Installing to target"))
        );
        assert_eq!(
            parse_step(">>> toolchain  Extracting"),
            Some(step(Some("toolchain"), "", "Extracting"))
        );
        assert_eq!(
            parse_step(">>>   Finalizing target directory"),
            Some(step(None, "", "Finalizing target directory"))
        );
        assert_eq!(
            parse_step("make[1]: *** [package/pkg-generic.mk:273] Error 2"),
            None
        );
        assert_eq!(parse_step(">>>"), None);
        assert_eq!(
            parse_step("  >>> host-tar 1.35 Building"),
            None,
            "only at line start"
        );
    }

    #[test]
    fn strips_the_standout_escapes_buildroot_adds() {
        let line = "\x1b[7m>>> runc 1.3.0 Building\x1b(B\x1b[m";
        assert_eq!(strip_escapes(line), ">>> runc 1.3.0 Building");
        assert_eq!(
            parse_step(line),
            Some(step(Some("runc"), "1.3.0", "Building"))
        );
    }

    #[test]
    fn step_display_reads_naturally() {
        assert_eq!(
            step(Some("linux"), "6.12.91", "Building").to_string(),
            "linux 6.12.91: Building"
        );
        assert_eq!(
            step(Some("toolchain"), "", "Extracting").to_string(),
            "toolchain: Extracting"
        );
        assert_eq!(
            step(None, "", "Executing post-image script x.sh").to_string(),
            "Executing post-image script x.sh"
        );
    }

    #[test]
    fn counts_finished_packages_as_the_build_moves_on() {
        let mut t = Tracker::new(4, ["host-skeleton".to_string()]);
        assert_eq!(t.done(), 1);
        assert!(!t.feed("gcc -c foo.c"));
        assert!(t.feed(">>> host-tar 1.35 Downloading"));
        assert!(t.feed(">>> host-tar 1.35 Building"));
        assert_eq!(t.done(), 1, "host-tar is still in progress");
        t.feed(">>> toolchain  Extracting");
        assert_eq!(t.done(), 2);
        assert_eq!(t.current().unwrap().package.as_deref(), Some("toolchain"));
        t.feed(">>> host-skeleton  Extracting");
        assert_eq!(
            t.done(),
            3,
            "an already built package printing again is not counted twice"
        );
        t.feed(">>>   Finalizing target directory");
        assert_eq!(t.done(), 3);
        t.feed(">>> linux 6.12.91 Building");
        t.feed(">>>   Generating filesystem image rootfs.erofs");
        assert_eq!(t.done(), 4);
        t.feed(">>> surprise 1 Building");
        assert_eq!(t.done(), 4, "never above the total");
        assert_eq!(t.total(), 4);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut tail = Tail::new(3);
        for i in 0..5 {
            tail.push(&format!("line {i}"));
        }
        assert_eq!(
            tail.lines().collect::<Vec<_>>(),
            ["line 2", "line 3", "line 4"]
        );
    }

    #[test]
    fn failure_report_names_package_step_output_and_log() {
        let mut tail = Tail::new(30);
        tail.push("wget: unable to resolve host address 'cdn.kernel.org'");
        tail.push("make: *** [package/pkg-generic.mk:185: .stamp_downloaded] Error 1");
        let current = step(Some("linux"), "6.12.91", "Downloading");
        let report = failure_report(
            None,
            Some(&current),
            &tail,
            std::path::Path::new("/o/build.log"),
            "exit status 2",
        );
        assert!(
            report.contains("while building linux 6.12.91: Downloading"),
            "{report}"
        );
        assert!(
            report.contains("  wget: unable to resolve host address"),
            "{report}"
        );
        assert!(report.ends_with("Full log: /o/build.log"), "{report}");
        let global = failure_report(
            None,
            Some(&step(None, "", "Executing post-image script p.sh")),
            &tail,
            "/l".as_ref(),
            "x",
        );
        assert!(
            global.contains("during \"Executing post-image script p.sh\""),
            "{global}"
        );
        assert!(failure_report(None, None, &tail, "/l".as_ref(), "x")
            .contains("before any package step"));
        let stamped = failure_report(
            Some(("host-m4", "Downloading")),
            Some(&current),
            &tail,
            "/l".as_ref(),
            "x",
        );
        assert!(
            stamped.contains("in package host-m4, step \"Downloading\""),
            "{stamped}"
        );
    }

    #[test]
    fn finds_the_failed_stamp_in_makes_error_line() {
        assert_eq!(
            failed_stamp(
                "make: *** [package/pkg-generic.mk:179: /o/build/host-m4-1.4.21/.stamp_downloaded] Error 1"
            ),
            Some(("/o/build/host-m4-1.4.21".to_string(), "Downloading"))
        );
        assert_eq!(
            failed_stamp(
                "make[1]: *** [package/pkg-generic.mk:273: /o/build/runc-1.3.0/.stamp_built] Error 2"
            ),
            Some(("/o/build/runc-1.3.0".to_string(), "Building"))
        );
        assert_eq!(
            failed_stamp("make: *** [/o/build/linux-6.12.91/.stamp_target_installed] Error 2"),
            Some(("/o/build/linux-6.12.91".to_string(), "Installing to target"))
        );
        assert_eq!(
            failed_stamp("make: *** [Makefile:123: target-post-image] Error 1"),
            None
        );
        assert_eq!(failed_stamp("gcc: error: foo.c"), None);
    }

    #[test]
    fn tracker_keeps_the_first_failure() {
        let mut t = Tracker::new(2, []);
        t.feed(">>> host-skeleton  Installing to host directory");
        t.feed(
            "make[1]: *** [package/pkg-generic.mk:179: /o/build/host-m4-1.4.21/.stamp_downloaded] Error 1",
        );
        t.feed("make: *** [Makefile:83: _all] Error 2");
        t.feed("make: *** [package/pkg-generic.mk:1: /o/build/other-1/.stamp_built] Error 1");
        assert_eq!(t.failed(), Some(("/o/build/host-m4-1.4.21", "Downloading")));
    }
}
