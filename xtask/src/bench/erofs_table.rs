//! What the EROFS compression bench tries and how it ranks and reports them: the candidates
//! with their mkfs.erofs arguments and Buildroot options, what U-Boot can read, the
//! compressors a mkfs.erofs offers, and the table. Pure, so the choice is tested.

use super::results::median;

/// One way to build the root filesystem image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// mkfs.erofs's name of the compressor; `None` stores files uncompressed.
    pub compressor: Option<&'static str>,
    pub level: Option<u32>,
    /// Largest physical cluster in bytes (`-C`); 0 keeps mkfs.erofs's default of one 4 KiB block.
    pub pcluster_bytes: u32,
}

const fn candidate(compressor: &'static str, level: Option<u32>, pcluster_bytes: u32) -> Candidate {
    Candidate {
        compressor: Some(compressor),
        level,
        pcluster_bytes,
    }
}

/// Big physical clusters (Linux 5.13, U-Boot's fs/erofs reads them) trade random-read
/// granularity for ratio.
const BIG_PCLUSTER: u32 = 64 * 1024;

/// Every candidate, the uncompressed one first (the others are measured against it).
pub const CANDIDATES: [Candidate; 9] = [
    Candidate {
        compressor: None,
        level: None,
        pcluster_bytes: 0,
    },
    candidate("lz4", None, 0),
    // Buildroot's default: lz4hc level 9.
    candidate("lz4hc", Some(9), 0),
    candidate("lz4hc", Some(12), 0),
    candidate("lz4hc", Some(12), BIG_PCLUSTER),
    candidate("deflate", Some(9), 0),
    candidate("deflate", Some(9), BIG_PCLUSTER),
    // Buildroot's default lzma level.
    candidate("lzma", Some(6), 0),
    candidate("lzma", Some(6), BIG_PCLUSTER),
];

/// The compressors U-Boot 2026.01's fs/erofs/decompress.c decodes (lz4hc writes lz4 data).
/// U-Boot must read /boot/zImage from the slot, so only these can hold it.
const UBOOT_DECODES: [&str; 3] = ["lz4", "lz4hc", "deflate"];

impl Candidate {
    /// A short name such as `lz4hc,12 -C65536`.
    pub fn name(&self) -> String {
        let mut name = match (self.compressor, self.level) {
            (None, _) => "none".to_string(),
            (Some(c), None) => c.to_string(),
            (Some(c), Some(level)) => format!("{c},{level}"),
        };
        if self.pcluster_bytes != 0 {
            name.push_str(&format!(" -C{}", self.pcluster_bytes));
        }
        name
    }

    /// mkfs.erofs's compression arguments, in the form Buildroot's fs/erofs/erofs.mk passes.
    pub fn mkfs_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(compressor) = self.compressor {
            args.push(match self.level {
                Some(level) => format!("-z{compressor},{level}"),
                None => format!("-z{compressor}"),
            });
        }
        if self.pcluster_bytes != 0 {
            args.push(format!("-C{}", self.pcluster_bytes));
        }
        args
    }

    /// Whether U-Boot can read a kernel stored this way.
    pub fn uboot_reads(&self) -> bool {
        self.compressor.is_none_or(|c| UBOOT_DECODES.contains(&c))
    }

    /// The Buildroot 2025.02 options that build this image, or `None` when its host
    /// erofs-utils cannot: package/erofs-utils builds the host tool `--without-zlib
    /// --without-libdeflate`, so it has no deflate.
    pub fn buildroot_options(&self) -> Option<Vec<String>> {
        let mut options = match (self.compressor, self.level) {
            (None, _) => vec!["BR2_TARGET_ROOTFS_EROFS_NONE=y".to_string()],
            (Some("lz4hc"), Some(level)) => vec![
                "BR2_TARGET_ROOTFS_EROFS_LZ4HC=y".to_string(),
                format!("BR2_TARGET_ROOTFS_EROFS_LZ4HC_LEVEL={level}"),
            ],
            (Some("lzma"), Some(level)) => vec![
                "BR2_TARGET_ROOTFS_EROFS_LZMA=y".to_string(),
                format!("BR2_TARGET_ROOTFS_EROFS_LZMA_LEVEL={level}"),
            ],
            (Some("lz4"), None) => vec![
                "BR2_TARGET_ROOTFS_EROFS_CUSTOM_COMPRESSION=y".to_string(),
                "BR2_TARGET_ROOTFS_EROFS_COMPRESSION_ALGORITHMS=\"lz4\"".to_string(),
            ],
            _ => return None,
        };
        if self.pcluster_bytes != 0 {
            options.push(format!(
                "BR2_TARGET_ROOTFS_EROFS_PCLUSTERSIZE={}",
                self.pcluster_bytes
            ));
        }
        Some(options)
    }
}

/// The compressors a mkfs.erofs offers, from its `--help` text: erofs-utils 1.5 ends with
/// "Available compressors are: lz4hc, lz4"; 1.6 and later list one per line, indented, after
/// "supported compressors and their option ranges are:", each followed by its options in
/// brackets.
pub fn available_compressors(help: &str) -> Vec<String> {
    if let Some(list) = help
        .lines()
        .find_map(|line| line.trim().strip_prefix("Available compressors are:"))
    {
        return list
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
    }
    let mut lines = help.lines();
    if !lines.any(|line| line.contains("supported compressors")) {
        return Vec::new();
    }
    let mut found = Vec::new();
    for line in lines {
        let trimmed = line.trim();
        if !line.starts_with(char::is_whitespace) || trimmed.starts_with('-') {
            break;
        }
        if trimmed.starts_with('[') {
            continue;
        }
        found.push(trimmed.to_string());
    }
    found
}

/// One candidate measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub candidate: Candidate,
    pub image_bytes: u64,
    pub mkfs_seconds: f64,
    /// Each run reading every file back on the build machine.
    pub host_seconds: Vec<f64>,
    /// Each run of the same read by the ARM build under qemu-arm; empty when not measured.
    pub arm_seconds: Vec<f64>,
}

impl Measured {
    /// Reading the whole image at `card_mib_per_s` plus decoding it, with the decode time of
    /// the ARM proxy where measured, else the host's.
    pub fn estimated_read_seconds(&self, card_mib_per_s: f64) -> Option<f64> {
        let decode = median(&self.arm_seconds).or_else(|| median(&self.host_seconds))?;
        Some(self.image_bytes as f64 / (card_mib_per_s * MIB) + decode)
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// The candidate to use at `card_mib_per_s`: of those U-Boot reads and Buildroot 2025.02
/// builds unpatched, the one whose whole image is read and decoded soonest; the smaller image
/// among equals.
pub fn recommend(measured: &[Measured], card_mib_per_s: f64) -> Option<&Measured> {
    measured
        .iter()
        .filter(|m| m.candidate.uboot_reads() && m.candidate.buildroot_options().is_some())
        .filter_map(|m| Some((m, m.estimated_read_seconds(card_mib_per_s)?)))
        .min_by(|(a, ta), (b, tb)| {
            ta.total_cmp(tb)
                .then_with(|| a.image_bytes.cmp(&b.image_bytes))
        })
        .map(|(m, _)| m)
}

fn seconds(values: &[f64]) -> String {
    median(values).map_or_else(|| "-".to_string(), |m| format!("{m:.2}"))
}

fn yes_no(yes: bool) -> &'static str {
    if yes {
        "yes"
    } else {
        "no"
    }
}

/// The results table, the candidates left out and why, and the recommendation per card speed.
pub fn report(
    measured: &[Measured],
    skipped: &[(Candidate, String)],
    card_speeds: &[f64],
    conditions: &str,
) -> String {
    let mut out = format!("EROFS compression benchmark: {conditions}\n\n");
    out.push_str(
        "| candidate | image bytes | MiB | of none | mkfs s | host read s | ARM proxy read s |",
    );
    for speed in card_speeds {
        out.push_str(&format!(" est. read @{speed} MiB/s |"));
    }
    out.push_str(" U-Boot reads | Buildroot 2025.02 |\n|---|---:|---:|---:|---:|---:|---:|");
    out.push_str(&"---:|".repeat(card_speeds.len()));
    out.push_str("---|---|\n");
    let none_bytes = measured
        .iter()
        .find(|m| m.candidate.compressor.is_none())
        .map(|m| m.image_bytes);
    for m in measured {
        let share = none_bytes.map_or_else(
            || "-".to_string(),
            |none| format!("{:.0}%", 100.0 * m.image_bytes as f64 / none.max(1) as f64),
        );
        out.push_str(&format!(
            "| {} | {} | {:.1} | {share} | {:.1} | {} | {} |",
            m.candidate.name(),
            m.image_bytes,
            m.image_bytes as f64 / MIB,
            m.mkfs_seconds,
            seconds(&m.host_seconds),
            seconds(&m.arm_seconds),
        ));
        for &speed in card_speeds {
            let estimate = m.estimated_read_seconds(speed);
            out.push_str(&format!(
                " {} |",
                estimate.map_or_else(|| "-".to_string(), |s| format!("{s:.2}"))
            ));
        }
        out.push_str(&format!(
            " {} | {} |\n",
            yes_no(m.candidate.uboot_reads()),
            yes_no(m.candidate.buildroot_options().is_some())
        ));
    }
    for (candidate, reason) in skipped {
        out.push_str(&format!("\nnot measured: {}: {reason}", candidate.name()));
    }
    if !skipped.is_empty() {
        out.push('\n');
    }
    for &speed in card_speeds {
        match recommend(measured, speed) {
            Some(best) => out.push_str(&format!(
                "\nat {speed} MiB/s: {} ({})",
                best.candidate.name(),
                best.candidate.buildroot_options().unwrap_or_default().join(" ")
            )),
            None => out.push_str(&format!(
                "\nat {speed} MiB/s: no measured candidate is both readable by U-Boot and built by Buildroot"
            )),
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(candidate: Candidate, image_mib: u64, host: f64, arm: &[f64]) -> Measured {
        Measured {
            candidate,
            image_bytes: image_mib << 20,
            mkfs_seconds: 1.0,
            host_seconds: vec![host],
            arm_seconds: arm.to_vec(),
        }
    }

    const NONE: Candidate = CANDIDATES[0];
    const LZ4HC_9: Candidate = CANDIDATES[2];
    const DEFLATE: Candidate = CANDIDATES[5];
    const LZMA: Candidate = CANDIDATES[7];

    #[test]
    fn names_and_mkfs_arguments_follow_buildroot() {
        assert_eq!(NONE.name(), "none");
        assert!(NONE.mkfs_args().is_empty());
        assert_eq!(LZ4HC_9.mkfs_args(), ["-zlz4hc,9"]);
        assert_eq!(CANDIDATES[1].mkfs_args(), ["-zlz4"]);
        assert_eq!(CANDIDATES[4].name(), "lz4hc,12 -C65536");
        assert_eq!(CANDIDATES[4].mkfs_args(), ["-zlz4hc,12", "-C65536"]);
    }

    #[test]
    fn uboot_reads_lz4_and_deflate_but_not_lzma() {
        assert!(NONE.uboot_reads() && LZ4HC_9.uboot_reads() && DEFLATE.uboot_reads());
        assert!(CANDIDATES[1].uboot_reads());
        assert!(!LZMA.uboot_reads());
    }

    #[test]
    fn buildroot_options_for_each_choice_and_none_for_deflate() {
        assert_eq!(
            LZ4HC_9.buildroot_options().unwrap(),
            [
                "BR2_TARGET_ROOTFS_EROFS_LZ4HC=y",
                "BR2_TARGET_ROOTFS_EROFS_LZ4HC_LEVEL=9"
            ]
        );
        assert_eq!(
            CANDIDATES[8].buildroot_options().unwrap(),
            [
                "BR2_TARGET_ROOTFS_EROFS_LZMA=y",
                "BR2_TARGET_ROOTFS_EROFS_LZMA_LEVEL=6",
                "BR2_TARGET_ROOTFS_EROFS_PCLUSTERSIZE=65536"
            ]
        );
        assert_eq!(
            CANDIDATES[1].buildroot_options().unwrap()[1],
            "BR2_TARGET_ROOTFS_EROFS_COMPRESSION_ALGORITHMS=\"lz4\""
        );
        assert_eq!(
            NONE.buildroot_options().unwrap(),
            ["BR2_TARGET_ROOTFS_EROFS_NONE=y"]
        );
        assert_eq!(DEFLATE.buildroot_options(), None);
    }

    #[test]
    fn compressors_from_old_and_new_help_texts() {
        let old = "usage: [options] FILE DIRECTORY\n --quiet  quiet\n\nAvailable compressors are: lz4hc, lz4\n";
        assert_eq!(available_compressors(old), ["lz4hc", "lz4"]);
        let new = " -zX[,level=Y]         X=compressor\n    [:...]             supported compressors and their option ranges are:\n                         lz4\n                         lz4hc\n                           [,level=<0-12>]\t\t(default=9)\n                         lzma\n                           [,level=<0-9,100-109>]\t0-9=normal\n                         deflate\n                           [,dictsize=<dictsize>]\t(default=32768)\n -C#                   specify the size\n";
        assert_eq!(
            available_compressors(new),
            ["lz4", "lz4hc", "lzma", "deflate"]
        );
        assert!(available_compressors("usage: nothing here").is_empty());
    }

    #[test]
    fn estimate_adds_card_time_to_the_arm_decode_or_else_the_host_one() {
        let with_arm = measured(LZ4HC_9, 100, 0.2, &[1.0, 3.0, 2.0]);
        assert_eq!(with_arm.estimated_read_seconds(50.0), Some(2.0 + 2.0));
        let host_only = measured(LZ4HC_9, 100, 0.5, &[]);
        assert_eq!(host_only.estimated_read_seconds(100.0), Some(1.0 + 0.5));
    }

    #[test]
    fn recommendation_weighs_card_time_against_decoding_and_needs_uboot_and_buildroot() {
        let results = [
            measured(NONE, 180, 0.05, &[0.3]),
            measured(LZ4HC_9, 100, 0.2, &[1.2]),
            measured(DEFLATE, 80, 0.5, &[2.0]),
            measured(LZMA, 60, 3.0, &[12.0]),
        ];
        // A slow card: lz4hc's 100 MiB in 5 s + 1.2 beats none's 9 s + 0.3; deflate
        // (4 + 2) would win but Buildroot cannot build it; lzma is unreadable by U-Boot.
        assert_eq!(recommend(&results, 20.0).unwrap().candidate, LZ4HC_9);
        // A fast medium: reading 180 MiB costs less than decoding.
        assert_eq!(recommend(&results, 400.0).unwrap().candidate, NONE);
        assert!(recommend(&results[3..], 20.0).is_none());
    }

    #[test]
    fn report_has_a_row_per_candidate_the_skipped_and_the_choice() {
        let results = [
            measured(NONE, 200, 0.05, &[0.5]),
            measured(LZ4HC_9, 100, 0.25, &[]),
        ];
        let skipped = [(LZMA, "this mkfs.erofs has no lzma".to_string())];
        let text = report(&results, &skipped, &[20.0], "test");
        assert!(text.contains("| est. read @20 MiB/s |"), "{text}");
        assert!(
            text.contains(
                "| none | 209715200 | 200.0 | 100% | 1.0 | 0.05 | 0.50 | 10.50 | yes | yes |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| lz4hc,9 | 104857600 | 100.0 | 50% | 1.0 | 0.25 | - | 5.25 | yes | yes |"
            ),
            "{text}"
        );
        assert!(
            text.contains("not measured: lzma,6: this mkfs.erofs has no lzma"),
            "{text}"
        );
        assert!(
            text.contains("at 20 MiB/s: lz4hc,9 (BR2_TARGET_ROOTFS_EROFS_LZ4HC=y BR2_TARGET_ROOTFS_EROFS_LZ4HC_LEVEL=9)"),
            "{text}"
        );
    }
}
