//! The read-only root's rule table and the declared persistent state: their schema, the checks
//! that make a malformed or ambiguous table an error, and loading both with the exceptions.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::Deserialize;

use crate::audit::exceptions::Exceptions;
use crate::project::Repo;

/// What every finding of this audit is grouped under.
pub const SOURCE: &str = "read-only-root";

/// The rule table, the declared state and the `[[root]]` exceptions of a checkout.
pub struct Tables {
    pub rules: RootRules,
    pub state: StateTable,
    pub exceptions: Exceptions,
}

impl Tables {
    pub fn load(repo: &Repo) -> Result<Tables> {
        Ok(Tables {
            rules: RootRules::load(&repo.path(crate::audit::tables::ROOT_RULES))?,
            state: StateTable::load(&repo.path(crate::audit::tables::PERSISTENT_STATE))?,
            exceptions: Exceptions::load(&repo.path(crate::audit::tables::EXCEPTIONS))?,
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootRules {
    pub api_tmpfs: Vec<String>,
    pub volatile_types: Vec<String>,
    pub volatile_source: String,
    pub buildroot: Vec<BuildrootRule>,
    pub fstab: FstabRule,
    pub directive: Vec<Directive>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Want {
    Y,
    N,
}

impl Want {
    pub fn as_str(self) -> &'static str {
        match self {
            Want::Y => "y",
            Want::N => "n",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildrootRule {
    pub option: String,
    pub want: Want,
    /// The folder a met rule puts a tmpfs on.
    pub tmpfs: Option<String>,
    pub source: String,
    pub why: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FstabRule {
    pub root_forbidden: Vec<String>,
    pub source: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directive {
    pub key: String,
    /// Where a relative name lands; empty when the setting takes absolute paths.
    pub under: String,
    pub source: String,
}

impl RootRules {
    pub fn load(path: &Path) -> Result<RootRules> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        RootRules::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<RootRules> {
        let rules: RootRules =
            toml::from_str(text).context("the read-only root rules have an unexpected shape")?;
        let mut options = BTreeSet::new();
        for rule in &rules.buildroot {
            ensure!(
                rule.option.starts_with("BR2_"),
                "'{}' is not a Buildroot option (BR2_...)",
                rule.option
            );
            ensure!(
                options.insert(&rule.option),
                "two rules for {}",
                rule.option
            );
            ensure!(
                !rule.why.trim().is_empty() && !rule.source.trim().is_empty(),
                "the rule for {} needs a source and a why",
                rule.option
            );
        }
        for dir in rules
            .api_tmpfs
            .iter()
            .chain(rules.buildroot.iter().filter_map(|r| r.tmpfs.as_ref()))
        {
            absolute(dir)?;
        }
        for d in &rules.directive {
            ensure!(
                d.under.is_empty() || absolute(&d.under).is_ok(),
                "[[directive]] {}: under must be empty or an absolute path",
                d.key
            );
        }
        Ok(rules)
    }
}

/// The declared persistent state (`persistent-state.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateTable {
    pub home: Home,
    pub state: Vec<StateEntry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Home {
    pub path: String,
    pub what: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dir,
    File,
    Device,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateEntry {
    pub path: String,
    pub stored: String,
    pub kind: Kind,
    pub mode: String,
    pub why: String,
}

impl StateEntry {
    /// Kept on the data volume, and seen elsewhere through a bind mount.
    pub fn is_bound(&self, home: &Home) -> bool {
        self.kind != Kind::Device && self.path != self.stored && under(&self.stored, &home.path)
    }
}

impl StateTable {
    pub fn load(path: &Path) -> Result<StateTable> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        StateTable::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<StateTable> {
        let table: StateTable =
            toml::from_str(text).context("the persistent state table has an unexpected shape")?;
        absolute(&table.home.path)?;
        let mut paths = BTreeSet::new();
        for e in &table.state {
            absolute(&e.path)?;
            absolute(&e.stored)?;
            ensure!(paths.insert(&e.path), "{} is declared twice", e.path);
            ensure!(
                !e.why.trim().is_empty(),
                "{}: say why it must persist",
                e.path
            );
            ensure!(
                e.mode.len() == 4 && u32::from_str_radix(&e.mode, 8).is_ok(),
                "{}: mode '{}' is not four octal digits",
                e.path,
                e.mode
            );
            match e.kind {
                Kind::Device => ensure!(
                    e.stored.starts_with("/dev/"),
                    "{}: a device entry is stored on a /dev/ node, not {}",
                    e.path,
                    e.stored
                ),
                Kind::Dir | Kind::File => ensure!(
                    under(&e.stored, &table.home.path) && e.stored != table.home.path,
                    "{}: stored {} is not inside the home {}",
                    e.path,
                    e.stored,
                    table.home.path
                ),
            }
        }
        Ok(table)
    }

    /// `path` is the home, a declared state path, or inside one of them.
    pub fn declares(&self, path: &str) -> bool {
        under(path, &self.home.path) || self.state.iter().any(|e| under(path, &e.path))
    }
}

/// `path` is `dir` or inside it (both absolute and normalised).
pub fn under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.starts_with(&format!("{dir}/")) || dir.is_empty()
}

fn absolute(path: &str) -> Result<()> {
    ensure!(
        path.starts_with('/')
            && (path == "/" || !path.ends_with('/'))
            && !path.split('/').any(|p| p == ".." || p == "."),
        "'{path}' is not a normalised absolute path"
    );
    Ok(())
}
