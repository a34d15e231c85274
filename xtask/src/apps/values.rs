//! The values inside `apps.toml`, each parsed from its text form: image references, sizes,
//! restart policies, ports and volumes. Pure; the error is a phrase the caller prefixes with the
//! file, line and field.

/// An image pinned by digest: `registry/repository[:tag]@sha256:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    /// Kept for people reading the file; the digest alone decides what is fetched.
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: String,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}@{}", self.registry, self.repository, self.digest)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    No,
    OnFailure(u32),
    Always,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The host address to bind, when not every address.
    pub host_ip: Option<String>,
    pub host: u16,
    pub container: u16,
    pub protocol: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// An absolute path under [`BoardLimits::volume_root`](super::spec::BoardLimits::volume_root), or a named Docker volume (kept by
    /// the daemon under its data root, on the encrypted partition too).
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// `registry/repository[:tag]@sha256:<64 lowercase hex>`; the registry must be named (a host
/// with a dot or port, or `localhost`), so no reference silently means Docker Hub.
pub fn parse_image(text: &str) -> std::result::Result<ImageRef, String> {
    let Some((name, digest)) = text.split_once('@') else {
        return Err(format!(
            "{text:?} has no digest: pin the image as registry/repository@sha256:<64 hex> (a tag alone can be moved)"
        ));
    };
    let hex = digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "{digest:?} is not a sha256 digest (sha256: then 64 lowercase hex digits)"
        ));
    }
    let (registry, path) = name.split_once('/').unwrap_or(("", name));
    if !(registry.contains('.') || registry.contains(':') || registry == "localhost") {
        return Err(format!(
            "{name:?} does not name its registry: write it in full, e.g. docker.io/library/{name}"
        ));
    }
    let (repository, tag) = match path.rsplit_once(':') {
        Some((repo, tag)) => (repo, Some(tag.to_string())),
        None => (path, None),
    };
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    if !repository.split('/').all(component_ok) {
        return Err(format!(
            "{repository:?} is not a repository name (lowercase path components)"
        ));
    }
    Ok(ImageRef {
        registry: registry.into(),
        repository: repository.into(),
        tag,
        digest: digest.into(),
    })
}

/// Bytes from Docker's notation: a number with an optional b, k, m or g (powers of 1024).
pub fn parse_memory(text: &str) -> std::result::Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (digits, shift) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 10),
        Some(b'm') => (&lower[..lower.len() - 1], 20),
        Some(b'g') => (&lower[..lower.len() - 1], 30),
        Some(b'b') => (&lower[..lower.len() - 1], 0),
        _ => (lower.as_str(), 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{text:?} is not a size such as 256m or 1g"))
}

pub fn parse_restart(text: &str) -> std::result::Result<Restart, String> {
    match text.split_once(':') {
        _ if text == "no" => Ok(Restart::No),
        _ if text == "always" => Ok(Restart::Always),
        Some(("on-failure", n)) => match n.parse::<u32>() {
            Ok(n) if n > 0 => Ok(Restart::OnFailure(n)),
            _ => Err(format!("{n:?} is not a positive number of restarts")),
        },
        _ => Err(format!(
            "{text:?} is not a restart policy (no, on-failure:N, always)"
        )),
    }
}

/// `[ip:]host:container[/tcp|udp]`.
pub fn parse_port(text: &str) -> std::result::Result<Port, String> {
    let (spec, protocol) = text.rsplit_once('/').unwrap_or((text, "tcp"));
    if protocol != "tcp" && protocol != "udp" {
        return Err(format!("{protocol:?} is not tcp or udp"));
    }
    let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
    let number = |s: &str| s.parse::<u16>().ok().filter(|n| *n > 0);
    match parts.as_slice() {
        [container, host, rest @ ..] => Ok(Port {
            host_ip: rest.first().map(|ip| ip.to_string()),
            host: number(host).ok_or_else(|| format!("{host:?} is not a host port"))?,
            container: number(container)
                .ok_or_else(|| format!("{container:?} is not a container port"))?,
            protocol: protocol.into(),
        }),
        _ => Err(format!(
            "{text:?} is not [address:]host-port:container-port[/tcp|udp]"
        )),
    }
}

pub fn is_clean_absolute(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains('\0')
        && !path.contains(',')
        && path.split('/').all(|c| c != ".." && c != ".")
}

/// `source:target[:ro|rw]`, the source under `volume_root` or a named volume.
pub fn parse_volume(text: &str, volume_root: &str) -> std::result::Result<Volume, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let (source, target, read_only) = match parts.as_slice() {
        [s, t] => (*s, *t, false),
        [s, t, "ro"] => (*s, *t, true),
        [s, t, "rw"] => (*s, *t, false),
        _ => return Err(format!("{text:?} is not source:target[:ro|rw]")),
    };
    let named = !source.is_empty()
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && source.as_bytes()[0].is_ascii_alphanumeric();
    let under_root = is_clean_absolute(source)
        && source
            .strip_prefix(volume_root)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1);
    if !named && !under_root {
        return Err(format!(
            "{source:?} is outside the encrypted data partition: bind a folder under {volume_root}/ or name a Docker volume"
        ));
    }
    if !is_clean_absolute(target) {
        return Err(format!(
            "{target:?} is not an absolute path inside the container"
        ));
    }
    Ok(Volume {
        source: source.into(),
        target: target.into(),
        read_only,
    })
}
