//! The Buildroot build itself: `make` run with its output logged whole to `<output>/build.log`,
//! a progress bar fed from its `>>>` lines, and a failure reported with the package, the step and
//! the last lines.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use super::progress;

/// Lines of build output shown when it fails.
const TAIL_LINES: usize = 30;

/// Run the build, logging everything to `<output>/build.log` and showing progress.
pub(super) fn run(
    mut command: std::process::Command,
    output: &Path,
    info: &serde_json::Value,
    mut tracker: progress::Tracker,
    started: Instant,
) -> Result<()> {
    let log_path = output.join("build.log");
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(&log_path)
            .with_context(|| format!("could not create the build log {}", log_path.display()))?,
    );
    // The exact command and the environment it adds, for whoever reads the log later.
    writeln!(log, "# cargo xtask image ran: {command:?}")
        .with_context(|| format!("could not write {}", log_path.display()))?;
    let (reader, writer) =
        std::io::pipe().context("could not create a pipe for the build output")?;
    command
        .stdin(Stdio::null())
        .stdout(
            writer
                .try_clone()
                .context("could not duplicate the output pipe")?,
        )
        .stderr(writer);
    let mut child = command
        .spawn()
        .context("could not start make for the Buildroot build")?;
    // The command holds the pipe's write end; drop it so reading ends when make exits.
    drop(command);

    let bar = ProgressBar::new(tracker.total() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} packages  {wide_msg}",
        )
        .expect("the progress template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar.set_position(tracker.done() as u64);
    bar.set_message("Buildroot is checking the host and configuration");
    let mut tail = progress::Tail::new(TAIL_LINES);
    let mut reader = BufReader::new(reader);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        let n = reader
            .read_until(b'\n', &mut raw)
            .context("could not read the build output")?;
        if n == 0 {
            break;
        }
        log.write_all(&raw)
            .with_context(|| format!("could not write {}", log_path.display()))?;
        let line = String::from_utf8_lossy(&raw);
        let line = line.trim_end_matches(['\n', '\r']);
        tail.push(line);
        if tracker.feed(line) {
            let current = tracker
                .current()
                .map(ToString::to_string)
                .unwrap_or_default();
            bar.set_position(tracker.done() as u64);
            bar.set_message(current.clone());
            if bar.is_hidden() {
                eprintln!(
                    "[{}] {}/{} {current}",
                    indicatif::FormattedDuration(started.elapsed()),
                    tracker.done(),
                    tracker.total()
                );
            }
        }
    }
    log.flush()
        .with_context(|| format!("could not write {}", log_path.display()))?;
    let status = child.wait().context("could not wait for make")?;
    if !status.success() {
        // The report below says where it stopped; a half-drawn bar would only garble it.
        bar.finish_and_clear();
        let failed = tracker
            .failed()
            .map(|(dir, step)| (package_of_build_dir(info, output, dir), step));
        let failed = failed
            .as_ref()
            .map(|(package, step)| (package.as_str(), *step));
        bail!(progress::failure_report(
            failed,
            tracker.current(),
            &tail,
            &log_path,
            &status.to_string()
        ));
    }
    bar.set_position(tracker.total() as u64);
    bar.finish_with_message(format!("built; log in {}", log_path.display()));
    Ok(())
}

/// The show-info package whose build folder make named (`<output>/build/host-m4-1.4.21`); the
/// folder's name when no package claims it.
fn package_of_build_dir(info: &serde_json::Value, output: &Path, dir: &str) -> String {
    let relative = Path::new(dir)
        .strip_prefix(output)
        .map_or_else(|_| dir.to_string(), |r| r.display().to_string());
    info.as_object()
        .and_then(|entries| {
            entries.iter().find(|(_, e)| {
                e.get("stamp_dir")
                    .and_then(|d| d.as_str())
                    .is_some_and(|d| d.trim_end_matches('/') == relative)
            })
        })
        .map(|(name, _)| name.clone())
        .unwrap_or_else(|| relative.rsplit('/').next().unwrap_or(dir).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_a_failed_build_folder_to_its_package() {
        let info = json!({
            "host-m4": {"stamp_dir": "build/host-m4-1.4.21"},
            "m4": {"stamp_dir": "build/m4-1.4.21"},
            "toolchain": {"stamp_dir": "build/toolchain/"}
        });
        let out = Path::new("/o");
        assert_eq!(
            package_of_build_dir(&info, out, "/o/build/host-m4-1.4.21"),
            "host-m4"
        );
        assert_eq!(
            package_of_build_dir(&info, out, "/o/build/toolchain"),
            "toolchain"
        );
        assert_eq!(
            package_of_build_dir(&info, out, "/o/build/mystery-2.0"),
            "mystery-2.0"
        );
    }

    /// A stand-in for `make`: a script printing step lines on stdout and errors on stderr.
    fn fake_make(dir: &Path, body: &str) -> std::process::Command {
        let script = dir.join("fake-make.sh");
        std::fs::write(&script, body).unwrap();
        let mut command = std::process::Command::new("sh");
        command.arg(script);
        command
    }

    #[test]
    fn a_failing_build_is_logged_whole_and_reported_with_package_step_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let info = json!({"host-m4": {"type": "host", "stamp_dir": "build/host-m4-1.4.21"}});
        let failed_dir = dir.path().join("build/host-m4-1.4.21");
        let body = format!(
            "echo '>>> host-m4 1.4.21 Downloading'\n\
             for i in $(seq 1 40); do echo \"noise $i\"; done\n\
             echo 'wget: unable to resolve host address' >&2\n\
             echo 'make: *** [package/pkg-generic.mk:179: {}/.stamp_downloaded] Error 1' >&2\n\
             exit 2\n",
            failed_dir.display()
        );
        let tracker = progress::Tracker::new(1, []);
        let err = run(
            fake_make(dir.path(), &body),
            dir.path(),
            &info,
            tracker,
            Instant::now(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("failed (exit status: 2) in package host-m4, step \"Downloading\""),
            "{err}"
        );
        assert!(
            err.contains("  wget: unable to resolve host address\n"),
            "{err}"
        );
        assert!(!err.contains("noise 5\n"), "only the last lines: {err}");
        assert!(err.contains("noise 40"), "{err}");
        assert!(
            err.ends_with(&format!(
                "Full log: {}",
                dir.path().join("build.log").display()
            )),
            "{err}"
        );
        let log = std::fs::read_to_string(dir.path().join("build.log")).unwrap();
        assert!(log.starts_with("# cargo xtask image ran: "), "{log}");
        assert!(
            log.contains("noise 1\n") && log.contains("Error 1\n"),
            "the log keeps everything: {log}"
        );
    }

    #[test]
    fn a_successful_build_returns_after_the_output_ends() {
        let dir = tempfile::tempdir().unwrap();
        let body = "echo '>>> host-m4 1.4.21 Building'\necho '>>>   Finalizing target directory'\nexit 0\n";
        let tracker = progress::Tracker::new(1, []);
        run(
            fake_make(dir.path(), body),
            dir.path(),
            &json!({}),
            tracker,
            Instant::now(),
        )
        .unwrap();
        assert!(std::fs::read_to_string(dir.path().join("build.log"))
            .unwrap()
            .contains("Finalizing"));
    }
}
