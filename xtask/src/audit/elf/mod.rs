//! ELF hardening of every program and library in the root filesystem.
//!
//! The layers, one file each: [`analyze`](mod@analyze) (the properties of one file, from its bytes alone),
//! [`rules`] (the rule table and how a file is judged by it), [`search_path`] (DT_RPATH and
//! DT_RUNPATH judged by the folders they name in the image), [`prebuilt`] (files Buildroot copies
//! prebuilt from the toolchain, known by their owning package, and the `[[elf_prebuilt]]` policy),
//! [`waivers`] (the `[[elf]]` exceptions matched to the files of the image).

pub mod analyze;
pub mod prebuilt;
pub mod rules;
pub mod search_path;
pub mod waivers;

pub use analyze::{analyze, is_elf, ElfKind, ElfProperties, Pie, Relro, Tri};
pub use prebuilt::{match_prebuilt, FileOwners, Prebuilt};
pub use rules::{evaluate, evaluate_config, parse_rules, ConfigRule, ElfRule, ElfRules, Property};
pub use waivers::Waivers;
