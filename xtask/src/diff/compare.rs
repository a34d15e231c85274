//! Two tree snapshots compared path by path, each difference named and described. Pure.

use std::collections::BTreeMap;

use crate::tree::Entry;

/// A difference, named by where it is (`sdcard.img[p2]:/etc/hostname`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub what: String,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.what)
    }
}

/// Compare two snapshots; `prefix` names the tree in the result. Pure.
pub fn compare_trees(
    prefix: &str,
    a: &BTreeMap<String, Entry>,
    b: &BTreeMap<String, Entry>,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let name = |p: &str| format!("{prefix}{p}");
    for (path, ea) in a {
        match b.get(path) {
            None => out.push(Difference {
                path: name(path),
                what: "only in A".into(),
            }),
            Some(eb) if ea == eb => {}
            Some(eb) => out.push(Difference {
                path: name(path),
                what: describe(ea, eb),
            }),
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(Difference {
            path: name(path),
            what: "only in B".into(),
        });
    }
    out.sort_by(|x, y| x.path.cmp(&y.path));
    out
}

fn describe(a: &Entry, b: &Entry) -> String {
    match (a, b) {
        (
            Entry::File {
                size: sa,
                sha256: ha,
                mode: ma,
                owner: oa,
            },
            Entry::File {
                size: sb,
                sha256: hb,
                mode: mb,
                owner: ob,
            },
        ) => {
            let mut parts = Vec::new();
            if ha != hb {
                parts.push(if sa == sb {
                    format!("content differs ({sa} bytes each)")
                } else {
                    format!("content differs ({sa} vs {sb} bytes)")
                });
            }
            if ma != mb {
                parts.push(format!("mode {ma:o} vs {mb:o}"));
            }
            if oa != ob {
                parts.push(format!("owner {}:{} vs {}:{}", oa.0, oa.1, ob.0, ob.1));
            }
            parts.join(", ")
        }
        (
            Entry::Dir {
                mode: ma,
                owner: oa,
            },
            Entry::Dir {
                mode: mb,
                owner: ob,
            },
        ) => {
            if ma != mb {
                format!("directory mode {ma:o} vs {mb:o}")
            } else {
                format!("directory owner {}:{} vs {}:{}", oa.0, oa.1, ob.0, ob.1)
            }
        }
        (Entry::Symlink { target: ta }, Entry::Symlink { target: tb }) => {
            format!("symlink to {ta} vs {tb}")
        }
        _ => format!("{} vs {}", kind_name(a), kind_name(b)),
    }
}

fn kind_name(e: &Entry) -> String {
    match e {
        Entry::Dir { .. } => "directory".into(),
        Entry::File { .. } => "file".into(),
        Entry::Symlink { .. } => "symlink".into(),
        Entry::Other { kind } => kind.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(sha: &str, size: u64) -> Entry {
        Entry::File {
            size,
            sha256: sha.into(),
            mode: 0o644,
            owner: (0, 0),
        }
    }

    #[test]
    fn lists_added_removed_and_changed_paths() {
        let a = BTreeMap::from([
            ("/same".to_string(), file("1", 1)),
            ("/changed".to_string(), file("1", 1)),
            ("/gone".to_string(), file("1", 1)),
            ("/link".to_string(), Entry::Symlink { target: "x".into() }),
        ]);
        let mut b = a.clone();
        b.insert("/changed".into(), file("2", 3));
        b.remove("/gone");
        b.insert(
            "/new".into(),
            Entry::Dir {
                mode: 0o755,
                owner: (0, 0),
            },
        );
        b.insert("/link".into(), Entry::Symlink { target: "y".into() });
        let d = compare_trees("img:", &a, &b);
        let got: Vec<String> = d.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            got,
            vec![
                "img:/changed: content differs (1 vs 3 bytes)",
                "img:/gone: only in A",
                "img:/link: symlink to x vs y",
                "img:/new: only in B",
            ]
        );
        assert!(compare_trees("", &a, &a).is_empty());
    }

    #[test]
    fn names_mode_and_owner_changes() {
        let a = BTreeMap::from([("/f".to_string(), file("1", 1))]);
        let b = BTreeMap::from([(
            "/f".to_string(),
            Entry::File {
                size: 1,
                sha256: "1".into(),
                mode: 0o600,
                owner: (0, 1000),
            },
        )]);
        assert_eq!(
            compare_trees("", &a, &b)[0].what,
            "mode 644 vs 600, owner 0:0 vs 0:1000"
        );
    }
}
