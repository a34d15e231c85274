//! The machine's load while a bench runs, printed with its results so a reader can judge them.

/// The 1-minute load average from /proc/loadavg's text.
pub fn load_average(loadavg: &str) -> Option<f64> {
    loadavg.split_whitespace().next()?.parse().ok()
}

/// The 1-minute load average now, or "unknown".
pub fn current_load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .as_deref()
        .and_then(load_average)
        .map_or_else(|| "unknown".to_string(), |load| format!("{load:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_average_is_the_first_field() {
        assert_eq!(load_average("2.29 2.11 2.32 3/812 16269\n"), Some(2.29));
        assert_eq!(load_average(""), None);
    }
}
