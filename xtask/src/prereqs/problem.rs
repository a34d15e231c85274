//! What a host lacks, and the one message that names it with the `apt-get install` that fixes it.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing {
        tool: String,
        package: String,
    },
    TooOld {
        tool: String,
        found: String,
        need: (u32, u32),
        package: String,
    },
    /// A version we could not read (e.g. a BSD `patch` where GNU patch is required).
    Unrecognised {
        tool: String,
        output: String,
        package: String,
    },
    PerlModule {
        module: String,
    },
    /// A Python module no candidate interpreter can import.
    PythonModule {
        module: String,
        package: String,
    },
    /// Buildroot refuses a PATH with `.`, an empty entry, or whitespace.
    Path(String),
}

impl Problem {
    fn package(&self) -> Option<&str> {
        match self {
            Problem::Missing { package, .. }
            | Problem::TooOld { package, .. }
            | Problem::Unrecognised { package, .. }
            | Problem::PythonModule { package, .. } => Some(package),
            Problem::PerlModule { .. } => Some("perl"),
            Problem::Path(_) => None,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing { tool, .. } => write!(f, "`{tool}` is not installed"),
            Problem::TooOld {
                tool, found, need, ..
            } => {
                write!(
                    f,
                    "`{tool}` {found} is too old (Buildroot needs {}.{} or newer)",
                    need.0, need.1
                )
            }
            Problem::Unrecognised { tool, output, .. } => {
                write!(
                    f,
                    "`{tool}` is not the GNU version Buildroot needs (it says: {output})"
                )
            }
            Problem::PerlModule { module } => write!(f, "the Perl module {module} is missing"),
            Problem::PythonModule { module, .. } => {
                write!(f, "the Python module {module} is missing")
            }
            Problem::Path(why) => write!(f, "PATH {why}"),
        }
    }
}

/// The message for a list of problems, ending with the one `apt-get install` that fixes them;
/// `needed_for` completes "this machine lacks what …".
pub fn report(problems: &[Problem], needed_for: &str) -> Option<String> {
    if problems.is_empty() {
        return None;
    }
    let mut text = format!("this machine lacks what {needed_for}:\n");
    for problem in problems {
        text.push_str(&format!("  - {problem}\n"));
    }
    let mut packages: Vec<&str> = problems.iter().filter_map(Problem::package).collect();
    packages.sort_unstable();
    packages.dedup();
    if !packages.is_empty() {
        text.push_str(&format!(
            "Install them with: sudo apt-get install {}\n",
            packages.join(" ")
        ));
    }
    text.push_str("(Debian/Ubuntu package names; the Buildroot manual's \"System requirements\" lists them for other systems.)");
    Some(text)
}
