//! The kernel command line (`board/<board>/cmdline.txt`) as the kernel parses it.

use std::collections::BTreeMap;

use anyhow::{ensure, Result};

/// Kernel parameters, last occurrence winning; names use `_` (the kernel treats `-` alike).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cmdline(BTreeMap<String, String>);

impl Cmdline {
    pub fn get(&self, param: &str) -> Option<&str> {
        self.0.get(&normalize_param(param)).map(String::as_str)
    }
}

fn normalize_param(name: &str) -> String {
    name.replace('-', "_")
}

/// Parse a one-line command line; double quotes may hold spaces (`param="a b"`).
pub fn parse_cmdline(text: &str) -> Result<Cmdline> {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        lines.len() == 1,
        "expected exactly one non-empty line, found {}",
        lines.len()
    );
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in lines[0].chars() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    ensure!(!quoted, "unterminated quote");
    if !word.is_empty() {
        words.push(word);
    }
    let mut params = BTreeMap::new();
    for w in words {
        let (name, value) = w.split_once('=').unwrap_or((w.as_str(), ""));
        params.insert(normalize_param(name), value.to_string());
    }
    Ok(Cmdline(params))
}
