//! The suite's results (pure): one line a test as it ends, with its time, and the closing
//! `N passed, N failed` line.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    /// Why, in one sentence or a few lines (the console's tail follows in the log).
    Failed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub name: String,
    pub outcome: Outcome,
    pub time: Duration,
}

impl TestResult {
    /// `PASS boot/root-is-verity (12.3 s)`, or FAIL with the reason on the lines below.
    pub fn line(&self) -> String {
        let secs = self.time.as_secs_f64();
        match &self.outcome {
            Outcome::Passed => format!("PASS {} ({secs:.1} s)", self.name),
            Outcome::Failed(why) => {
                let why = why.trim_end().replace('\n', "\n     ");
                format!("FAIL {} ({secs:.1} s)\n     {why}", self.name)
            }
        }
    }
}

/// `12 passed, 1 failed`, and the names of the failed ones.
pub fn summary(results: &[TestResult]) -> String {
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.outcome != Outcome::Passed)
        .map(|r| r.name.as_str())
        .collect();
    let passed = results.len() - failed.len();
    let mut s = format!("{passed} passed, {} failed", failed.len());
    if !failed.is_empty() {
        s.push_str(&format!(" ({})", failed.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, outcome: Outcome, ms: u64) -> TestResult {
        TestResult {
            name: name.into(),
            outcome,
            time: Duration::from_millis(ms),
        }
    }

    #[test]
    fn each_result_names_its_test_and_time_and_a_failure_its_reason() {
        assert_eq!(
            r("boot/slot-a", Outcome::Passed, 12_340).line(),
            "PASS boot/slot-a (12.3 s)"
        );
        assert_eq!(
            r(
                "data/luks2",
                Outcome::Failed("no LUKS header\non p4".into()),
                500
            )
            .line(),
            "FAIL data/luks2 (0.5 s)\n     no LUKS header\n     on p4"
        );
    }

    #[test]
    fn the_summary_counts_both_and_names_the_failures() {
        let all = [
            r("a", Outcome::Passed, 1),
            r("b", Outcome::Failed("x".into()), 1),
            r("c", Outcome::Passed, 1),
        ];
        assert_eq!(summary(&all), "2 passed, 1 failed (b)");
        assert_eq!(summary(&all[..1]), "1 passed, 0 failed");
        assert_eq!(summary(&[]), "0 passed, 0 failed");
    }
}
