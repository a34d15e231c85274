//! Ctrl-C during a flash: the handler only raises a flag; every loop that writes, reads or
//! decodes checks it at each chunk and stops with an error, so the caller can say the target is
//! incomplete.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use anyhow::{bail, Result};

/// Set by the Ctrl-C handler; the writer stops at the next chunk.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler once per process (a second `ctrlc::set_handler` fails, which a library
/// flashing twice must not report as a lost handler). False when it could not be installed.
pub fn catch_ctrl_c() -> bool {
    static CAUGHT: OnceLock<bool> = OnceLock::new();
    *CAUGHT.get_or_init(|| ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst)).is_ok())
}

pub fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted by Ctrl-C");
    }
    Ok(())
}
