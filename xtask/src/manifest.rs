//! The build manifest written next to the image (`manifest.toml`): what determined the output
//! (Buildroot version and commit, this repo's commit and dirty flag, defconfig digest, packages
//! with versions and licenses, SOURCE_DATE_EPOCH, toolchain) and the digest of every artifact.
