//! The AppArmor profile an app runs under (CIS Docker v1.6.0 5.2, 5.1 in earlier versions):
//! Docker's `docker-default`, none, or a profile file shipped with the app. Pure: the caller reads
//! the file, this finds the profile it declares.
//!
//! dockerd confines a container only when `/sbin/apparmor_parser` exists (containerd's
//! `pkg/apparmor` `HostSupports`), and then writes and loads `docker-default` itself. A profile
//! of the app's own is installed under [`PROFILE_DIR`], which `apparmor.service` (Buildroot's
//! apparmor package) loads at boot, before `sysinit.target` and so before `docker.service`.

/// The profile dockerd generates and loads (moby `profiles/apparmor`).
pub const DOCKER_DEFAULT: &str = "docker-default";
/// No AppArmor confinement (a weakening: it needs its reason).
pub const UNCONFINED: &str = "unconfined";
/// Where `apparmor.service` loads every profile from at boot, in the root filesystem.
pub const PROFILE_DIR: &str = "etc/apparmor.d";

/// How an app is confined.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AppArmor {
    #[default]
    DockerDefault,
    Unconfined,
    /// A profile file of the app's own.
    Profile(Profile),
}

/// A profile file named in `apps.toml`, read and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The file as `apps.toml` names it, relative to `apps.toml`.
    pub file: String,
    /// What its `profile NAME` header declares: the name `--security-opt apparmor=` takes.
    pub name: String,
    pub text: String,
}

impl AppArmor {
    /// The name `--security-opt apparmor=` is given.
    pub fn profile_name(&self) -> &str {
        match self {
            AppArmor::DockerDefault => DOCKER_DEFAULT,
            AppArmor::Unconfined => UNCONFINED,
            AppArmor::Profile(p) => &p.name,
        }
    }
}

/// The file name of `app`'s own profile under [`PROFILE_DIR`].
pub fn staged_file(app: &str) -> String {
    format!("berth-app-{app}")
}

/// The name of the one top-level profile of a profile file, which must be declared as
/// `profile NAME [attachment] [flags] {`. The error is a phrase the caller prefixes with the file.
pub fn declared_profile(text: &str) -> Result<String, String> {
    let mut depth = 0usize;
    let mut headers = Vec::new();
    for (number, line) in text.lines().enumerate() {
        // `#` starts a comment (`#include` too is a line of its own, with no block).
        let code = line.split('#').next().unwrap_or("");
        let code = without_variables(code);
        let mut from = 0;
        for (i, c) in code.char_indices() {
            match c {
                '{' => {
                    if depth == 0 {
                        headers.push((number + 1, code[from..i].trim().to_string()));
                    }
                    depth += 1;
                }
                '}' => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or_else(|| format!("line {}: a `}}` closes no block", number + 1))?;
                    from = i + 1;
                }
                _ => {}
            }
        }
    }
    if depth != 0 {
        return Err("a block is not closed: the braces do not balance".into());
    }
    let [(line, header)] = headers.as_slice() else {
        let found: Vec<String> = headers
            .iter()
            .map(|(line, h)| format!("line {line}: `{h}`"))
            .collect();
        return Err(format!(
            "declares {} top-level profiles{}; a file declares exactly one, as `profile NAME {{ … }}`",
            headers.len(),
            if found.is_empty() {
                String::new()
            } else {
                format!(" ({})", found.join(", "))
            }
        ));
    };
    let mut words = header.split_whitespace();
    let name = match (words.next(), words.next()) {
        (Some("profile"), Some(name)) => name.trim_matches('"'),
        _ => {
            return Err(format!(
                "line {line}: `{header}` is not a `profile NAME` header: Docker names the profile a container runs under"
            ))
        }
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        return Err(format!(
            "line {line}: the profile name {name:?} is not letters, digits, '.', '_' and '-'"
        ));
    }
    if name == DOCKER_DEFAULT || name == UNCONFINED {
        return Err(format!(
            "line {line}: {name:?} is Docker's own; name the app's profile otherwise"
        ));
    }
    Ok(name.to_string())
}

/// `code` with each variable reference `@{NAME}` written `@NAME`, so its braces open no block.
fn without_variables(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("@{") {
        out.push_str(&rest[..at + 1]);
        let after = &rest[at + 2..];
        match after.find('}') {
            Some(end) => {
                out.push_str(&after[..end]);
                rest = &after[end + 1..];
            }
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = "#include <tunables/global>\n@{HOME}=/home/\n\n\
        profile berth-web flags=(attach_disconnected,mediate_deleted) {\n  #include <abstractions/base>\n\
          /srv/{a,b}/** r,\n  @{HOME}/x r,\n  deny /proc/sys/** w, # no sysctl\n  profile child {\n  }\n}\n";

    #[test]
    fn the_one_top_level_profile_is_found_past_includes_variables_globs_and_children() {
        assert_eq!(declared_profile(PROFILE).unwrap(), "berth-web");
        assert_eq!(
            declared_profile("profile \"quoted\"{ }\n").unwrap(),
            "quoted"
        );
    }

    #[test]
    fn a_file_without_exactly_one_named_profile_is_refused() {
        let none = declared_profile("#include <tunables/global>\n").unwrap_err();
        assert!(none.contains("declares 0 top-level profiles"), "{none}");
        let two = declared_profile("profile a {\n}\nprofile b {\n}\n").unwrap_err();
        assert!(
            two.contains("declares 2") && two.contains("line 3: `profile b`"),
            "{two}"
        );
        let unnamed = declared_profile("/usr/bin/web {\n}\n").unwrap_err();
        assert!(unnamed.contains("not a `profile NAME` header"), "{unnamed}");
        assert!(declared_profile("profile a {\n")
            .unwrap_err()
            .contains("not closed"));
        assert!(declared_profile("}\n")
            .unwrap_err()
            .contains("closes no block"));
        assert!(declared_profile("profile docker-default {}\n")
            .unwrap_err()
            .contains("Docker's own"));
        assert!(declared_profile("profile a/b {}\n")
            .unwrap_err()
            .contains("is not letters"));
    }

    #[test]
    fn the_name_given_to_docker() {
        assert_eq!(AppArmor::default().profile_name(), "docker-default");
        assert_eq!(AppArmor::Unconfined.profile_name(), "unconfined");
        assert_eq!(staged_file("web"), "berth-app-web");
    }
}
