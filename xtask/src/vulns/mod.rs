//! The vulnerability record (`configs/vulnerabilities.toml`) and the gate over Buildroot's
//! `make pkg-stats` output.
//!
//! The record says, for each security-relevant package, the version Berth ships and the known CVEs
//! fixed upstream in or after it, each with whether Berth is affected and why. `docs/security.md`
//! carries the table rendered from it (checked by a test here), `cargo xtask image` copies the
//! record into the manifest, and
//! `cargo xtask audit cves <pkg-stats.json>` fails on a CVE pkg-stats reports for one of these
//! packages that is neither recorded as fixed or not affecting Berth nor ignored by Buildroot.

mod gate;
mod record;

pub use gate::{gate, run, CvesArgs, PkgStats};
pub use record::{record_in, Cve, Package, Record, Status};
