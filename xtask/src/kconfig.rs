//! Pure Kconfig logic: parsing `.config` / defconfig / fragment files, merging and comparing.
