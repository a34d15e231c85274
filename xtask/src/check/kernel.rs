//! Stage (e) of `cargo xtask check`: the kernel configuration resolved in a real Linux 6.12 tree
//! exactly as `cargo xtask audit kernel --linux` does it (the one home of that logic is
//! [`crate::audit::kernel::linux`]), every dropped fragment line named, the result audited.

use std::path::Path;

use anyhow::Result;

use crate::project::Repo;

/// Resolve the kernel configuration of the checkout `repo` in `linux_src` and audit it; the
/// resolved `.config` is kept in `<cache>/kernel-check/`.
pub fn check(repo: &Repo, linux_src: &Path, cache: &Path) -> Result<()> {
    crate::audit::kernel::linux::audit_linux_tree(repo, linux_src, cache)
}
