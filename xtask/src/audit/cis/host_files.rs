//! The host's own files an item reads: auditd rules, /etc/group, /etc/passwd and the subordinate
//! id ranges, containerd's config.toml, and where the daemon listens.

use anyhow::{Context, Result};

use super::unit::unit_values;
use crate::rootfs::RootFs;

pub(super) fn audit_watches(fs: &dyn RootFs) -> Result<Vec<String>> {
    let mut files = vec!["/etc/audit/audit.rules".to_string()];
    for name in fs.list("/etc/audit/rules.d")?.unwrap_or_default() {
        if name.ends_with(".rules") {
            files.push(format!("/etc/audit/rules.d/{name}"));
        }
    }
    let mut watches = Vec::new();
    for file in files {
        if let Some(bytes) = fs.read(&file)? {
            watches.extend(parse_audit_watches(&String::from_utf8_lossy(&bytes)));
        }
    }
    Ok(watches)
}

pub fn parse_audit_watches(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some("-w"))
                .then(|| words.next())
                .flatten()
                .map(str::to_string)
        })
        .collect()
}

pub(super) fn local_socket_only(
    fs: &dyn RootFs,
    daemon_json: Option<&serde_json::Value>,
) -> Result<std::result::Result<String, String>> {
    let mut hosts: Vec<String> = Vec::new();
    let mut tlsverify = false;
    if let Some(json) = daemon_json {
        if let Some(list) = json.get("hosts").and_then(|h| h.as_array()) {
            hosts.extend(list.iter().filter_map(|h| h.as_str()).map(str::to_string));
        }
        tlsverify = json
            .get("tlsverify")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
    }
    for exec in unit_values(fs, "docker.service", "Service", "ExecStart")?.unwrap_or_default() {
        let words: Vec<&str> = exec.split_whitespace().collect();
        for (i, w) in words.iter().enumerate() {
            if let Some(h) = w.strip_prefix("--host=").or_else(|| w.strip_prefix("-H=")) {
                hosts.push(h.to_string());
            } else if (*w == "-H" || *w == "--host") && i + 1 < words.len() {
                hosts.push(words[i + 1].to_string());
            }
            tlsverify |= *w == "--tlsverify" || *w == "--tlsverify=true";
        }
    }
    let tcp: Vec<&String> = hosts.iter().filter(|h| h.starts_with("tcp://")).collect();
    Ok(match (tcp.is_empty(), tlsverify) {
        (true, _) => Ok(format!(
            "no TCP listener: daemon reachable only on {}",
            if hosts.is_empty() {
                "its default unix socket".to_string()
            } else {
                hosts.join(", ")
            }
        )),
        (false, true) => Ok(format!("TCP listener {tcp:?} with --tlsverify")),
        (false, false) => Err(format!(
            "daemon listens on {tcp:?} without TLS verification"
        )),
    })
}

pub(super) fn group_without_members(
    group_file: &str,
    group: &str,
) -> std::result::Result<String, String> {
    for line in group_file.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() >= 4 && fields[0] == group {
            return if fields[3].trim().is_empty() {
                Ok(format!("group {group} has no members"))
            } else {
                Err(format!("group {group} has members: {}", fields[3]))
            };
        }
    }
    Err(format!("group {group} is not in /etc/group"))
}

pub(super) fn userns_ids(
    fs: &dyn RootFs,
    daemon_json: Option<&serde_json::Value>,
) -> Result<std::result::Result<String, String>> {
    let Some(remap) = daemon_json
        .and_then(|j| j.get("userns-remap"))
        .and_then(|v| v.as_str())
    else {
        return Ok(Err("daemon.json sets no userns-remap".to_string()));
    };
    // "default" makes dockerd create dockremap with useradd at run time, which Buildroot lacks.
    let user = remap.split(':').next().unwrap_or(remap);
    if user == "default" {
        return Ok(Err("userns-remap \"default\" needs useradd on the target; name a user shipped in the image".into()));
    }
    let mut problems = Vec::new();
    for (file, what) in [
        ("/etc/passwd", "user"),
        ("/etc/subuid", "subordinate uid range"),
        ("/etc/subgid", "subordinate gid range"),
    ] {
        let text = fs
            .read(file)?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if !text.lines().any(|l| l.split(':').next() == Some(user)) {
            problems.push(format!("no {what} for {user} in {file}"));
        }
    }
    Ok(if problems.is_empty() {
        Ok(format!(
            "{user} has a user entry and subordinate uid/gid ranges"
        ))
    } else {
        Err(problems.join(", "))
    })
}

pub(super) fn containerd_socket_root(
    fs: &dyn RootFs,
) -> Result<std::result::Result<String, String>> {
    const CONFIG: &str = "/etc/containerd/config.toml";
    let Some(bytes) = fs.read(CONFIG)? else {
        return Ok(Ok(
            "no containerd config.toml: the socket is created root:root, mode 0660".into(),
        ));
    };
    let config: toml::Table = String::from_utf8_lossy(&bytes)
        .parse()
        .with_context(|| format!("{CONFIG} in the image is not valid TOML"))?;
    let grpc = config.get("grpc").and_then(|g| g.as_table());
    let id = |k: &str| {
        grpc.and_then(|g| g.get(k))
            .and_then(|v| v.as_integer())
            .unwrap_or(0)
    };
    Ok(match (id("uid"), id("gid")) {
        (0, 0) => Ok(format!("{CONFIG} keeps the socket root:root")),
        (u, g) => Err(format!("{CONFIG} [grpc] sets the socket owner to {u}:{g}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_watches_and_groups() {
        assert_eq!(
            parse_audit_watches("# x\n-w /usr/bin/dockerd -k docker\n-a always,exit\n"),
            ["/usr/bin/dockerd"]
        );
        assert!(group_without_members("docker:x:101:\n", "docker").is_ok());
        assert!(group_without_members("docker:x:101:alice\n", "docker").is_err());
        assert!(group_without_members("root:x:0:\n", "docker").is_err());
    }
}
