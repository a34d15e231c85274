//! What the flash bench times and how it reports: the tools, their rotating order, the timings
//! and the table of medians and ratios. Pure, so the report is tested.

pub const DD: &str = "dd bs=4M conv=fsync";
pub const BMAPTOOL: &str = "bmaptool copy";
pub const BERTH: &str = "berth flash";
pub const BERTH_NO_VERIFY: &str = "berth flash --no-verify";
pub const TOOLS: [&str; 4] = [DD, BMAPTOOL, BERTH, BERTH_NO_VERIFY];
/// Berth's two modes, each compared with the two other tools.
pub const COMPARISONS: [(&str, &str); 4] = [
    (BERTH, BMAPTOOL),
    (BERTH, DD),
    (BERTH_NO_VERIFY, BMAPTOOL),
    (BERTH_NO_VERIFY, DD),
];

#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub tool: &'static str,
    pub target: &'static str,
    pub seconds: f64,
}

/// The tools in the order run `run` uses: rotated each run, so no tool always goes first (after
/// the image was just read) or always follows the same one.
pub fn run_order(run: u32) -> Vec<&'static str> {
    let mut order = TOOLS.to_vec();
    order.rotate_left(run as usize % TOOLS.len());
    order
}

/// The median of some times (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn times_of(timings: &[Timing], tool: &str, target: &str) -> Vec<f64> {
    timings
        .iter()
        .filter(|t| t.tool == tool && t.target == target)
        .map(|t| t.seconds)
        .collect()
}

/// Targets in the order first timed.
fn targets(timings: &[Timing]) -> Vec<&'static str> {
    let mut seen = Vec::new();
    for t in timings {
        if !seen.contains(&t.target) {
            seen.push(t.target);
        }
    }
    seen
}

/// The results: per tool and target the median and every run, then Berth's medians as a
/// fraction of the other tools' (below 1.00 means Berth was faster).
pub fn report(timings: &[Timing], conditions: &str) -> String {
    let mut out = format!(
        "flash benchmark: {conditions}\n\n| tool | target | median s | runs s |\n|---|---|---:|---|\n"
    );
    for target in targets(timings) {
        for tool in TOOLS {
            let times = times_of(timings, tool, target);
            let Some(mid) = median(&times) else { continue };
            let runs: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
            out.push_str(&format!(
                "| {tool} | {target} | {mid:.2} | {} |\n",
                runs.join(" ")
            ));
        }
    }
    out.push_str(
        "\n| target | berth mode | vs | ratio of medians | berth is |\n|---|---|---|---:|---|\n",
    );
    for target in targets(timings) {
        for (berth, other) in COMPARISONS {
            let (Some(b), Some(o)) = (
                median(&times_of(timings, berth, target)),
                median(&times_of(timings, other, target)),
            ) else {
                continue;
            };
            let ratio = b / o.max(1e-6);
            let verdict = if ratio <= 1.0 {
                format!("{:.1}x faster", 1.0 / ratio.max(1e-6))
            } else {
                format!("{ratio:.2}x slower")
            };
            out.push_str(&format!(
                "| {target} | {berth} | {other} | {ratio:.2} | {verdict} |\n"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One tool's runs on one target, as timings in run order.
    fn runs(tool: &'static str, target: &'static str, seconds: &[f64]) -> Vec<Timing> {
        seconds
            .iter()
            .map(|&seconds| Timing {
                tool,
                target,
                seconds,
            })
            .collect()
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn every_tool_leads_once_in_four_runs() {
        let firsts: Vec<&str> = (0..4).map(|run| run_order(run)[0]).collect();
        for tool in TOOLS {
            assert_eq!(
                firsts.iter().filter(|&&t| t == tool).count(),
                1,
                "{firsts:?}"
            );
            assert!((0..4).all(|run| run_order(run).contains(&tool)));
        }
    }

    #[test]
    fn report_gives_medians_and_ratios_per_target() {
        let timings = [
            runs(DD, "file", &[12.0, 14.0, 13.0]),
            runs(BMAPTOOL, "file", &[1.0, 3.0, 2.0]),
            runs(BERTH, "file", &[1.5, 0.5, 1.0]),
            runs(BERTH_NO_VERIFY, "file", &[0.5]),
            runs(BERTH_NO_VERIFY, "loop device", &[4.0]),
            runs(BMAPTOOL, "loop device", &[2.0]),
        ]
        .concat();
        let text = report(&timings, "test");
        assert!(
            text.contains("| dd bs=4M conv=fsync | file | 13.00 | 12.00 14.00 13.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| berth flash | file | 1.00 | 1.50 0.50 1.00 |"),
            "{text}"
        );
        assert!(
            text.contains("| file | berth flash | bmaptool copy | 0.50 | 2.0x faster |"),
            "{text}"
        );
        assert!(
            text.contains("| file | berth flash | dd bs=4M conv=fsync | 0.08 | 13.0x faster |"),
            "{text}"
        );
        assert!(
            text.contains(
                "| file | berth flash --no-verify | bmaptool copy | 0.25 | 4.0x faster |"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "| loop device | berth flash --no-verify | bmaptool copy | 2.00 | 2.00x slower |"
            ),
            "{text}"
        );
        // No berth default timing on the loop device: no row compares it.
        assert!(!text.contains("| loop device | berth flash | "), "{text}");
    }
}
