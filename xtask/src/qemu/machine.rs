//! A running twin: QEMU started with its console on pipes, read by a thread into a
//! [`Transcript`] (and a log file); waits on the console with a deadline; commands over SSH with
//! a deadline; and the power cut, SIGKILL, which ends QEMU with no chance to flush anything.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::build::Build;
use super::command::{self, Console, Machine};
use super::console::{Cursor, Found, Transcript};
use super::disk;

/// How to reach the guest's sshd.
#[derive(Debug, Clone)]
pub struct Ssh {
    pub port: u16,
    /// The private half of a key the image's `authorized_keys` holds.
    pub key: PathBuf,
    /// The known-hosts file of this twin: host keys are recorded on first contact, then must
    /// stay the same.
    pub known_hosts: PathBuf,
}

pub struct Twin {
    pub machine: Machine,
    pub ssh: Ssh,
    log: PathBuf,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    transcript: Arc<Mutex<Transcript>>,
    /// Where the current power-on's console starts.
    pub since_power_on: Cursor,
}

impl Twin {
    /// A twin that is off; `log` receives every power-on's console.
    pub fn new(machine: Machine, ssh: Ssh, log: PathBuf) -> Twin {
        Twin {
            machine,
            ssh,
            log,
            child: None,
            stdin: None,
            transcript: Arc::default(),
            since_power_on: Cursor(0),
        }
    }

    /// A twin of `build` with pieces of its own in `work`, named after `name`: a new card overlay
    /// and key medium, an empty known-hosts file and a console log; its console on pipes.
    pub fn fresh(
        sh: &xshell::Shell,
        build: &Build,
        ssh_port: u16,
        ssh_key: &Path,
        work: &Path,
        name: &str,
    ) -> Result<Twin> {
        let card = work.join(format!("{name}.qcow2"));
        let key = work.join(format!("{name}-key.img"));
        disk::overlay(sh, &build.card, &card)?;
        disk::key_medium(sh, &key)?;
        let known_hosts = work.join(format!("{name}.known_hosts"));
        let _ = std::fs::remove_file(&known_hosts);
        Ok(Twin::new(
            Machine {
                firmware: build.firmware.clone(),
                card,
                card_format: "qcow2",
                card_log: None,
                key_medium: Some(key),
                ssh_port,
                rtc_base: None,
                console: Console::Pipe,
            },
            Ssh {
                port: ssh_port,
                key: ssh_key.to_path_buf(),
                known_hosts,
            },
            work.join(format!("{name}.console.log")),
        ))
    }

    pub fn power_on(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("the twin is already running");
        }
        let mut qemu = Command::new(command::QEMU);
        // QEMU dies with the suite (a Ctrl-C, a panic), so no orphan keeps the card or the port.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            qemu.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            });
        }
        let mut child = qemu
            .args(self.machine.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("could not start {}", command::QEMU))?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("could not open the console log {}", self.log.display()))?;
        let _ = writeln!(log, "\n===== power on =====");
        self.since_power_on = self.transcript.lock().unwrap().end();
        for (stream, mut log) in [
            (
                child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
                log.try_clone()?,
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as Box<dyn Read + Send>),
                log,
            ),
        ] {
            let Some(mut stream) = stream else { continue };
            let transcript = Arc::clone(&self.transcript);
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let _ = log.write_all(&buf[..n]);
                    transcript.lock().unwrap().push(&buf[..n]);
                }
            });
        }
        self.stdin = child.stdin.take();
        self.child = Some(child);
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL: QEMU stops between two instructions; what it had not handed to the host's
    /// kernel is lost, what it had is kept (the host does not crash).
    pub fn power_cut(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("could not kill QEMU")?;
            child.wait().context("could not reap QEMU")?;
        }
        self.stdin = None;
        Ok(())
    }

    /// Where the console is now; a wait from here sees only what comes after.
    pub fn mark(&self) -> Cursor {
        self.transcript.lock().unwrap().end()
    }

    /// Where one of `patterns` appears on the console after `from`, if it has yet.
    pub fn find(&self, from: Cursor, patterns: &[&str]) -> Option<Found> {
        self.transcript.lock().unwrap().find(from, patterns)
    }

    /// Wait until one of `patterns` appears on the console after `from`; fails at the deadline,
    /// or when QEMU ends, with the console's last lines.
    pub fn expect(&mut self, from: Cursor, patterns: &[&str], timeout: Duration) -> Result<Found> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.find(from, patterns) {
                return Ok(found);
            }
            if !self.is_running() {
                bail!(
                    "QEMU ended before the console said {patterns:?}; its last lines:\n{}",
                    self.tail(15)
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "the console did not say {patterns:?} within {} s; its last lines:\n{}",
                    timeout.as_secs(),
                    self.tail(15)
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Everything the console said since `from`.
    pub fn said_since(&self, from: Cursor) -> String {
        let t = self.transcript.lock().unwrap();
        t.text().get(from.0..).unwrap_or("").to_string()
    }

    pub fn tail(&self, lines: usize) -> String {
        self.transcript.lock().unwrap().tail(lines)
    }

    /// Type on the serial console.
    pub fn type_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("the twin is not running")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .context("could not write to the twin's console")
    }

    /// Run `command` on the guest as root over SSH; fails on a non-zero exit, with its stderr.
    pub fn ssh(&self, command: &str, timeout: Duration) -> Result<String> {
        let out = self.ssh_output(command, None, timeout)?;
        if !out.status.success() {
            let shown: String = command.chars().take(120).collect();
            let cut = if shown.len() < command.len() {
                "…"
            } else {
                ""
            };
            bail!(
                "`{shown}{cut}` on the twin failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Run `command` with `input` on its standard input; the exit status is the caller's.
    pub fn ssh_output(
        &self,
        command: &str,
        input: Option<&Path>,
        timeout: Duration,
    ) -> Result<Output> {
        let mut cmd = Command::new("ssh");
        cmd.args(ssh_options(&self.ssh))
            .arg("root@127.0.0.1")
            .arg(command);
        let stdin = match input {
            Some(path) => Stdio::from(
                File::open(path).with_context(|| format!("could not open {}", path.display()))?,
            ),
            None => Stdio::null(),
        };
        run_with_deadline(cmd.stdin(stdin), timeout)
            .with_context(|| format!("`{command}` on the twin over SSH"))
    }

    /// Wait until sshd answers with the recorded host key.
    pub fn wait_for_ssh(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            if !self.is_running() {
                bail!(
                    "QEMU ended while waiting for SSH; the console's last lines:\n{}",
                    self.tail(15)
                );
            }
            match self.ssh_output("true", None, Duration::from_secs(20)) {
                Ok(out) if out.status.success() => return Ok(()),
                Ok(out) => last = String::from_utf8_lossy(&out.stderr).trim().to_string(),
                Err(e) => last = format!("{e:#}"),
            }
            thread::sleep(Duration::from_secs(2));
        }
        bail!(
            "SSH did not answer within {} s (last: {last}); the console's last lines:\n{}",
            timeout.as_secs(),
            self.tail(15)
        )
    }

    /// Wait for QEMU to end by itself (a poweroff).
    pub fn wait_off(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.is_running() {
            if Instant::now() >= deadline {
                bail!("the twin did not power off within {} s", timeout.as_secs());
            }
            thread::sleep(Duration::from_millis(200));
        }
        self.child = None;
        Ok(())
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        let _ = self.power_cut();
    }
}

/// The options of every SSH connection to the twin (pure): its key only, no agent, no prompt,
/// this twin's own known-hosts file, host key recorded on first contact and checked after.
pub fn ssh_options(ssh: &Ssh) -> Vec<String> {
    vec![
        "-p".into(),
        ssh.port.to_string(),
        "-i".into(),
        ssh.key.display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "IdentityAgent=none".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        "ConnectTimeout=10".into(),
        "-o".into(),
        "StrictHostKeyChecking=accept-new".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", ssh.known_hosts.display()),
        "-o".into(),
        "LogLevel=ERROR".into(),
    ]
}

/// Run `cmd` to its end, killing it at the deadline; stdout and stderr are collected.
pub fn run_with_deadline(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {:?}", cmd.get_program()))?;
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .map(|stream| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut s) = stream {
                let _ = s.read_to_end(&mut buf);
            }
            buf
        })
    })
    .collect();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("gave up after {} s", timeout.as_secs());
        }
        thread::sleep(Duration::from_millis(50));
    };
    let mut outputs = readers.into_iter().map(|r| r.join().unwrap_or_default());
    Ok(Output {
        status,
        stdout: outputs.next().unwrap_or_default(),
        stderr: outputs.next().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_past_its_deadline_is_killed_and_reported() {
        let started = Instant::now();
        let err = run_with_deadline(Command::new("sleep").arg("30"), Duration::from_millis(300))
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(err.to_string(), "gave up after 0 s");
        let out = run_with_deadline(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn ssh_uses_only_the_twins_key_and_known_hosts_and_never_prompts() {
        let o = ssh_options(&Ssh {
            port: 10022,
            key: "/k/id".into(),
            known_hosts: "/s/known_hosts".into(),
        })
        .join(" ");
        assert!(
            o.starts_with("-p 10022 -i /k/id -o IdentitiesOnly=yes"),
            "{o}"
        );
        for want in [
            "BatchMode=yes",
            "StrictHostKeyChecking=accept-new",
            "UserKnownHostsFile=/s/known_hosts",
            "IdentityAgent=none",
        ] {
            assert!(o.contains(want), "{want} missing from {o}");
        }
    }
}
