//! Where the audit's rule tables and its exceptions file live in a checkout: one home for the
//! paths, read by every audit (kept apart from `audit/mod.rs` so the audits can import them
//! without importing the verb that dispatches to them).

/// The rule tables and the exceptions file, by their path in a checkout ([`Repo::path`](crate::project::Repo::path)).
pub const KERNEL_RULES: &str = "configs/hardening/kernel-rules.toml";
pub const CIS_RULES: &str = "configs/hardening/cis-docker.toml";
pub const ELF_RULES: &str = "configs/hardening/elf-rules.toml";
/// CIS Docker Benchmark section 5 for the declared apps (docs/apps.md).
pub const APPS_RULES: &str = "configs/hardening/cis-apps.toml";
/// Every deliberate departure from those rules, with its reason ([`super::exceptions`]).
pub const EXCEPTIONS: &str = "configs/hardening/exceptions.toml";
/// The read-only root's rules, and the one declared home of persistent state ([`super::root`]).
pub const ROOT_RULES: &str = "configs/hardening/readonly-root.toml";
pub const PERSISTENT_STATE: &str = "configs/hardening/persistent-state.toml";
