//! Kconfig: parsing `.config`, defconfig and fragment files, merging them, and finding every
//! requested setting that a resolved configuration dropped or changed (pure logic, `settings.rs`);
//! resolving a package's configuration in its source tree exactly as Buildroot does
//! ([`resolve()`]); and what our Buildroot defconfig asks of the kernel and U-Boot ([`plan`]).
//!
//! Works for both Buildroot (`BR2_*`) and kernel / U-Boot (`CONFIG_*`) files.

pub mod plan;
mod resolve;
mod settings;

pub use resolve::{arm_cross_compile, arm_make_args, kbuild_version, makefile_variable, resolve};
pub use settings::*;
