//! What each package and file weighs in the root filesystem: Buildroot's `make graph-size`
//! statistics, handed out beside the image so growth shows in every release, not only when the
//! system image's budget is hit.

use std::path::Path;

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use crate::buildroot::Buildroot;
use crate::prereqs::{self, Problem};
use crate::release::{FILE_SIZE_STATS, PACKAGE_SIZE_STATS};

/// The Python module Buildroot's `support/scripts/size-stats` imports (for the graph it always
/// draws), and the Debian package that brings it.
pub const MODULE: (&str, &str) = ("matplotlib", "python3-matplotlib");

/// A Python that can run size-stats, or what is missing: asked before the long build.
pub fn python(sh: &Shell) -> Result<String, Vec<Problem>> {
    prereqs::python_with(sh, &[MODULE])
}

/// Run what `make graph-size` runs, with `python` (the script's `#!/usr/bin/env python3` may find
/// an interpreter without matplotlib first), then copy its two CSV files into `<output>/images`.
/// The graph stays in `<output>/graphs`: a drawing, not a record. Returns the files' names
/// relative to `<output>/images`.
pub fn write(sh: &Shell, br: &Buildroot, output: &Path, python: &str) -> Result<Vec<String>> {
    let script = br.root.join("support/scripts/size-stats");
    let graphs = output.join("graphs");
    std::fs::create_dir_all(&graphs)
        .with_context(|| format!("could not create {}", graphs.display()))?;
    let graph = graphs.join("graph-size.pdf");
    let files = graphs.join(FILE_SIZE_STATS);
    let packages = graphs.join(PACKAGE_SIZE_STATS);
    cmd!(
        sh,
        "{python} {script} --builddir {output} --graph {graph} --file-size-csv {files} --package-size-csv {packages}"
    )
    .quiet()
    .ignore_stdout()
    .run()
    .with_context(|| {
        format!(
            "Buildroot's size statistics ({}) failed on {}",
            script.display(),
            output.display()
        )
    })?;
    let images = output.join("images");
    [FILE_SIZE_STATS, PACKAGE_SIZE_STATS]
        .into_iter()
        .map(|name| {
            std::fs::copy(graphs.join(name), images.join(name))
                .with_context(|| format!("could not copy {name} into {}", images.display()))?;
            Ok(name.to_string())
        })
        .collect()
}
