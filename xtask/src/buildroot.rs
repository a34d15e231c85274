//! Locating, fetching and verifying the pinned Buildroot tree, and running `make` in it.
