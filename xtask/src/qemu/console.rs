//! What the twin's serial console said (pure): a transcript that grows as QEMU writes, and the
//! matching the suite waits on. Lines are kept without carriage returns and terminal escapes, so
//! a pattern is plain text; a search starts at a cursor, so an old line never answers a new wait.

/// The console so far.
#[derive(Debug, Default, Clone)]
pub struct Transcript {
    text: String,
    /// An escape sequence cut at the end of the last chunk.
    pending: Vec<u8>,
}

/// A position in the transcript; what is before it has been consumed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor(pub usize);

/// Where a pattern was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// Which of the patterns matched (its index).
    pub which: usize,
    /// The whole line holding the match.
    pub line: String,
    /// Just after the match's line: where the next search starts.
    pub next: Cursor,
}

impl Transcript {
    /// Add what QEMU wrote; a chunk may end inside a UTF-8 character or an escape sequence.
    pub fn push(&mut self, chunk: &[u8]) {
        let mut bytes = std::mem::take(&mut self.pending);
        bytes.extend_from_slice(chunk);
        let mut i = 0;
        let mut clean = Vec::with_capacity(bytes.len());
        while i < bytes.len() {
            match bytes[i] {
                b'\r' | 0 => i += 1,
                0x1b => match escape_len(&bytes[i..]) {
                    Some(n) => i += n,
                    None => {
                        self.pending = bytes[i..].to_vec();
                        break;
                    }
                },
                b => {
                    clean.push(b);
                    i += 1;
                }
            }
        }
        // A UTF-8 character cut in two waits for its end.
        let valid = match std::str::from_utf8(&clean) {
            Ok(_) => clean.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => clean.len(),
        };
        if valid < clean.len() {
            let mut rest = clean.split_off(valid);
            rest.extend(std::mem::take(&mut self.pending));
            self.pending = rest;
        }
        self.text.push_str(&String::from_utf8_lossy(&clean));
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The end: a search from here sees only what comes later.
    pub fn end(&self) -> Cursor {
        Cursor(self.text.len())
    }

    /// The first of `patterns` to appear at or after `from`, earliest in the text first.
    pub fn find(&self, from: Cursor, patterns: &[&str]) -> Option<Found> {
        let hay = self.text.get(from.0..)?;
        let (at, which, len) = patterns
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .filter_map(|(i, p)| hay.find(p).map(|at| (at, i, p.len())))
            .min()?;
        let start = from.0 + hay[..at].rfind('\n').map_or(0, |n| n + 1);
        let end = from.0
            + at
            + len
            + hay[at + len..]
                .find('\n')
                .map_or(hay.len() - at - len, |n| n + 1);
        Some(Found {
            which,
            line: self.text[start..end].trim_end().to_string(),
            next: Cursor(end),
        })
    }

    /// The last `lines` lines, for a failure's message.
    pub fn tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// The length of the terminal escape sequence at the start of `b` (which starts with ESC), or
/// `None` when it is cut off: CSI (`ESC [ … final byte`), OSC (`ESC ] … BEL or ESC \`), else two
/// bytes.
fn escape_len(b: &[u8]) -> Option<usize> {
    match b.get(1)? {
        b'[' => b[2..]
            .iter()
            .position(|c| (0x40..=0x7e).contains(c))
            .map(|p| p + 3),
        b']' => (2..b.len()).find_map(|i| match b[i] {
            0x07 => Some(i + 1),
            0x1b if b.get(i + 1) == Some(&b'\\') => Some(i + 2),
            _ => None,
        }),
        _ => Some(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carriage_returns_and_colour_escapes_are_dropped_even_across_chunks() {
        let mut t = Transcript::default();
        t.push(b"[  OK  ] \x1b[0;32mStarted\x1b");
        t.push(b"[0m Docker\r\n");
        assert_eq!(t.text(), "[  OK  ] Started Docker\n");
    }

    #[test]
    fn a_utf8_character_cut_between_chunks_is_kept_whole() {
        let mut t = Transcript::default();
        let s = "slot A → good\n".as_bytes();
        let cut = s.iter().position(|&b| b == 0xe2).unwrap() + 1;
        t.push(&s[..cut]);
        t.push(&s[cut..]);
        assert_eq!(t.text(), "slot A → good\n");
    }

    #[test]
    fn the_earliest_pattern_wins_and_its_whole_line_is_returned() {
        let mut t = Transcript::default();
        t.push(
            b"U-Boot 2026.01\nberth: booting slot B (BOOT_ORDER=B A)\nKernel panic - not syncing\n",
        );
        let f = t
            .find(Cursor(0), &["Kernel panic", "berth: booting slot "])
            .unwrap();
        assert_eq!(f.which, 1);
        assert_eq!(f.line, "berth: booting slot B (BOOT_ORDER=B A)");
        let g = t
            .find(f.next, &["Kernel panic", "berth: booting slot "])
            .unwrap();
        assert_eq!(g.which, 0);
        assert!(t.find(g.next, &["berth: booting slot "]).is_none());
    }

    #[test]
    fn a_search_from_the_end_ignores_what_was_already_said() {
        let mut t = Transcript::default();
        t.push(b"berth login: ");
        let end = t.end();
        assert!(t.find(end, &["login:"]).is_none());
        t.push(b"\nberth login: ");
        assert_eq!(t.find(end, &["login:"]).unwrap().line, "berth login:");
    }

    #[test]
    fn a_match_on_an_unfinished_line_still_counts() {
        let mut t = Transcript::default();
        t.push(b"Hit any key to stop autoboot:  2");
        let f = t.find(Cursor(0), &["autoboot"]).unwrap();
        assert_eq!(f.next, t.end());
    }
}
