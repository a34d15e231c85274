//! `cargo xtask audit image <output>`: CIS Docker items and ELF hardening of a Buildroot output folder.
