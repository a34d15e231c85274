//! Choosing the target: a block device must pass every refusal rule, be shown and confirmed and
//! open exclusively; a regular file (`--to-file`) must be neither a device nor the image.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use super::device::{self, Disk, SystemRoot, SystemState};
use super::refusal;
use super::target::Target;

/// What the user allowed on the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct Consent {
    /// Do not ask before writing.
    pub yes: bool,
    /// A disk the kernel does not mark removable may be written.
    pub allow_non_removable: bool,
}

/// Checks the device against every refusal rule, shows it, asks, and opens it exclusively.
pub fn open_device(path: &Path, image_size: u64, consent: Consent) -> Result<(Target, Disk)> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("target {} does not exist", path.display()))?;
    if !meta.file_type().is_block_device() {
        bail!(
            "refusing to write {}: it is not a block device (to write into a regular file, pass --to-file); nothing was written",
            path.display()
        );
    }
    let dev = format!(
        "{}:{}",
        rustix::fs::major(meta.rdev()),
        rustix::fs::minor(meta.rdev())
    );
    let root = SystemRoot::live();
    let (name, partition) = device::find_by_dev(&root, &dev)
        .with_context(|| format!("{} ({dev}) is not listed under /sys/block", path.display()))?;
    if let Some(part) = partition {
        bail!(
            "refusing to write {}: it is partition {part} of /dev/{name}; give the whole disk; nothing was written",
            path.display()
        );
    }
    let disk = device::read_disk(&root, &name)?;
    let state = SystemState::read(&root)?;
    let refusals = refusal::refusals(&disk, &state, image_size, consent.allow_non_removable);
    if !refusals.is_empty() {
        let reasons: Vec<String> = refusals.iter().map(|r| format!("  - {r}")).collect();
        bail!(
            "refusing to write {}; nothing was written:\n{}",
            path.display(),
            reasons.join("\n")
        );
    }
    eprintln!(
        "This will overwrite:\n{}",
        refusal::describe(&disk, path, &state)
    );
    if !consent.yes {
        confirm(path)?;
    }
    let target = Target::open_device(path)?;
    let size = target.size()?;
    ensure!(
        size >= image_size,
        "refusing to write {}: it holds {size} bytes, less than the image's {image_size}; nothing was written",
        path.display()
    );
    Ok((target, disk))
}

/// A regular file as target skips the device checks, so it must never be a device, nor the
/// image itself.
pub fn open_file(image: &Path, target: &Path, image_size: u64) -> Result<Target> {
    if let Ok(meta) = std::fs::metadata(target) {
        ensure!(
            !meta.file_type().is_block_device(),
            "refusing to write {}: it is a block device, and --to-file skips the device checks \
             (drop --to-file); nothing was written",
            target.display()
        );
        let same = std::fs::canonicalize(image).ok() == std::fs::canonicalize(target).ok();
        ensure!(
            !same,
            "refusing to write {} onto itself; nothing was written",
            image.display()
        );
    }
    Target::open_file(target, image_size)
}

fn confirm(path: &Path) -> Result<()> {
    ensure!(
        std::io::stdin().is_terminal(),
        "refusing to write {} without confirmation: stdin is not a terminal (pass --yes); nothing was written",
        path.display()
    );
    eprint!(
        "Everything on {} will be lost. Type yes to continue: ",
        path.display()
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("could not read the answer")?;
    ensure!(answer.trim() == "yes", "not confirmed; nothing was written");
    Ok(())
}
