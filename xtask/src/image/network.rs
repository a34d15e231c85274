//! The no-network preflight: before the long build, find which source files are not yet in the
//! download cache and check, in a few seconds, that at least one of the hosts offering each is
//! reachable. Without network the build then fails at once, naming the files it could not fetch,
//! instead of after minutes of retries deep inside Buildroot.

use std::collections::BTreeSet;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One file Buildroot downloads (`show-info` → `downloads`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    pub package: String,
    /// Sub-folder of the download cache (`dl_dir`).
    pub dl_dir: String,
    pub file: String,
    /// Buildroot's `<method>[|opts]+<url>` entries, primary site first.
    pub uris: Vec<String>,
}

/// A host and port a download would connect to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Every distinct download of the configured build, target packages first.
pub fn downloads_from_show_info(info: &serde_json::Value) -> Vec<Download> {
    let mut seen = BTreeSet::new();
    let mut downloads = Vec::new();
    let Some(entries) = info.as_object() else {
        return downloads;
    };
    for (package, entry) in entries {
        let dl_dir = entry
            .get("dl_dir")
            .and_then(|d| d.as_str())
            .unwrap_or(package)
            .to_string();
        for download in entry
            .get("downloads")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            let Some(file) = download.get("source").and_then(|s| s.as_str()) else {
                continue;
            };
            if !seen.insert((dl_dir.clone(), file.to_string())) {
                continue;
            }
            let uris = download
                .get("uris")
                .and_then(|u| u.as_array())
                .map(|u| {
                    u.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            downloads.push(Download {
                package: package.clone(),
                dl_dir: dl_dir.clone(),
                file: file.into(),
                uris,
            });
        }
    }
    // The toolchain (needed first, and the largest), then target packages (the names users
    // know), then host tools.
    let rank = |d: &Download| match d.package.as_str() {
        p if p.starts_with("toolchain") => 0,
        p if p.starts_with("host-") => 2,
        _ => 1,
    };
    downloads.sort_by_key(|d| (rank(d), d.package.clone()));
    downloads
}

/// Where a Buildroot download URI connects; `None` for local files, which need no network.
pub fn endpoint(uri: &str) -> Option<Endpoint> {
    let (method, url) = uri.split_once('+').unwrap_or(("", uri));
    let method = method.split('|').next().unwrap_or("");
    if matches!(method, "file" | "local") || url.starts_with("file://") || url.starts_with('/') {
        return None;
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority = rest.split('/').next().unwrap_or("");
        let authority = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let default_port = match scheme {
            "https" => 443,
            "http" => 80,
            "ftp" => 21,
            "git" => 9418,
            "svn" => 3690,
            _ => 22, // ssh, svn+ssh, scp, sftp
        };
        return Some(split_port(authority, default_port));
    }
    // scp-like `user@host:path` (scp, sftp, git over ssh).
    let host = url.split(':').next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    (!host.is_empty()).then(|| Endpoint {
        host: host.into(),
        port: 22,
    })
}

fn split_port(authority: &str, default_port: u16) -> Endpoint {
    // `[v6]:port`, `host:port` or plain `host`.
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let port = after
                .strip_prefix(':')
                .and_then(|p| p.parse().ok())
                .unwrap_or(default_port);
            return Endpoint {
                host: host.into(),
                port,
            };
        }
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => Endpoint {
            host: host.into(),
            port: port.parse().unwrap(),
        },
        _ => Endpoint {
            host: authority.into(),
            port: default_port,
        },
    }
}

/// With a proxy configured, downloads connect to it rather than to the download hosts. `proxy`
/// looks a proxy up by its lower-case variable name (`https_proxy`; [`crate::host::Host::proxy`]
/// also tries the upper-case one).
pub fn through_proxy(
    target: Endpoint,
    uri: &str,
    proxy: &dyn Fn(&str) -> Option<String>,
) -> Endpoint {
    let scheme = uri
        .split_once('+')
        .map_or(uri, |(_, url)| url)
        .split("://")
        .next()
        .unwrap_or("");
    let variable = match scheme {
        "https" => "https_proxy",
        "http" => "http_proxy",
        "ftp" => "ftp_proxy",
        _ => return target,
    };
    let Some(value) = proxy(variable).filter(|s| !s.is_empty()) else {
        return target;
    };
    let authority = value
        .split_once("://")
        .map_or(value.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or("");
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    split_port(authority, 80)
}

/// The downloads none of whose hosts is reachable (local files count as reachable).
pub fn unfetchable<'a>(
    missing: &'a [Download],
    reachable: &dyn Fn(&str) -> bool,
) -> Vec<&'a Download> {
    missing
        .iter()
        .filter(|d| !d.uris.iter().any(|uri| reachable(uri)))
        .collect()
}

/// The message when sources cannot be fetched.
pub fn report(
    unfetchable: &[&Download],
    failed: &[(Endpoint, String)],
    reachable: &BTreeSet<Endpoint>,
    dl_root: &Path,
    waited: Duration,
) -> String {
    const SHOWN: usize = 12;
    let mut text = format!(
        "cannot fetch the sources this build needs: no host offering them could be reached \
         (checked for {:.1}s; no network?).\n{} file(s) are missing from the download cache {}:\n",
        waited.as_secs_f32(),
        unfetchable.len(),
        dl_root.display()
    );
    for d in unfetchable.iter().take(SHOWN) {
        let from = d
            .uris
            .first()
            .map(|u| u.split_once('+').map_or(u.as_str(), |(_, url)| url))
            .unwrap_or("?");
        text.push_str(&format!(
            "  - {}/{} (package {}, from {from})\n",
            d.dl_dir, d.file, d.package
        ));
    }
    if unfetchable.len() > SHOWN {
        text.push_str(&format!("  ... and {} more\n", unfetchable.len() - SHOWN));
    }
    let failed: Vec<String> = failed
        .iter()
        .map(|(e, why)| format!("{e} ({why})"))
        .collect();
    text.push_str(&format!("Unreachable: {}", failed.join(", ")));
    if !reachable.is_empty() {
        let reachable: Vec<String> = reachable.iter().map(ToString::to_string).collect();
        text.push_str(&format!(
            "\nReachable, but offering none of the files above: {}",
            reachable.join(", ")
        ));
    }
    text.push_str(&format!(
        "\nConnect this machine to the network and run again, or copy those files into {} \
         (e.g. from `make source` on a networked machine with the same Buildroot and defconfig). \
         If downloads go through a proxy set outside the environment (/etc/wgetrc, git config), \
         pass --skip-network-check.",
        dl_root.display()
    ));
    text
}

/// Try a TCP connection to each endpoint at once; give up on all of them after `budget`.
/// Returns the reachable endpoints and, for the others, why not.
pub fn probe(
    endpoints: &BTreeSet<Endpoint>,
    budget: Duration,
) -> (BTreeSet<Endpoint>, Vec<(Endpoint, String)>) {
    let (sender, receiver) = mpsc::channel();
    for endpoint in endpoints {
        let (sender, endpoint) = (sender.clone(), endpoint.clone());
        // Detached: a thread stuck in name resolution is abandoned at the deadline.
        std::thread::spawn(move || {
            let result = connect(&endpoint, budget);
            let _ = sender.send((endpoint, result));
        });
    }
    drop(sender);
    let deadline = Instant::now() + budget;
    let mut reachable = BTreeSet::new();
    let mut failed = Vec::new();
    let mut answered = BTreeSet::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match receiver.recv_timeout(left) {
            Ok((endpoint, Ok(()))) => {
                answered.insert(endpoint.clone());
                reachable.insert(endpoint);
            }
            Ok((endpoint, Err(why))) => {
                answered.insert(endpoint.clone());
                failed.push((endpoint, why));
            }
            Err(_) => break,
        }
    }
    for endpoint in endpoints.iter().filter(|e| !answered.contains(*e)) {
        failed.push((endpoint.clone(), "no answer in time".into()));
    }
    failed.sort();
    (reachable, failed)
}

fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<(), String> {
    let addresses = (endpoint.host.as_str(), endpoint.port)
        .to_socket_addrs()
        .map_err(|_| "name not resolved".to_string())?;
    let mut last = "no address".to_string();
    for address in addresses {
        match TcpStream::connect_timeout(&address, timeout) {
            Ok(_) => return Ok(()),
            Err(err) => last = err.kind().to_string(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ep(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn endpoints_of_buildroot_uris() {
        assert_eq!(
            endpoint("https+https://cdn.kernel.org/pub/linux/kernel/v6.x"),
            Some(ep("cdn.kernel.org", 443))
        );
        assert_eq!(
            endpoint("https|urlencode+https://sources.buildroot.net/linux"),
            Some(ep("sources.buildroot.net", 443))
        );
        assert_eq!(
            endpoint("git+https://github.com/hardkernel/u-boot"),
            Some(ep("github.com", 443))
        );
        assert_eq!(
            endpoint("git+git://git.example.org/x.git"),
            Some(ep("git.example.org", 9418))
        );
        assert_eq!(
            endpoint("http+http://mirror.local:8080/dl"),
            Some(ep("mirror.local", 8080))
        );
        assert_eq!(
            endpoint("scp+me@files.example.org:/srv/dl"),
            Some(ep("files.example.org", 22))
        );
        assert_eq!(
            endpoint("https+https://user:pw@[2001:db8::1]:8443/x"),
            Some(ep("2001:db8::1", 8443))
        );
        assert_eq!(endpoint("file+/home/me/dl"), None);
        assert_eq!(endpoint("local+/srv/src/pkg"), None);
    }

    #[test]
    fn proxies_replace_the_host_for_their_scheme() {
        let env = |name: &str| {
            (name == "https_proxy").then(|| "http://user:pw@proxy.corp:3128/".to_string())
        };
        let uri = "https+https://cdn.kernel.org/pub";
        assert_eq!(
            through_proxy(endpoint(uri).unwrap(), uri, &env),
            ep("proxy.corp", 3128)
        );
        let plain = "http+http://example.org/x";
        assert_eq!(
            through_proxy(endpoint(plain).unwrap(), plain, &env),
            ep("example.org", 80)
        );
        let git = "git+git://example.org/x";
        assert_eq!(
            through_proxy(endpoint(git).unwrap(), git, &env),
            ep("example.org", 9418)
        );
    }

    #[test]
    fn downloads_are_collected_once_per_file() {
        let info = json!({
            "linux": {"dl_dir": "linux", "downloads": [{"source": "linux-6.12.91.tar.xz",
                "uris": ["https+https://cdn.kernel.org/pub/linux/kernel/v6.x", "https|urlencode+https://sources.buildroot.net/linux"]}]},
            "linux-headers": {"dl_dir": "linux", "downloads": [{"source": "linux-6.12.91.tar.xz", "uris": []}]},
            "toolchain": {"virtual": true},
            "toolchain-external-bootlin": {"dl_dir": "toolchain-external-bootlin", "downloads": [{"source": "armv7.tar.xz",
                "uris": ["https+https://toolchains.bootlin.com/downloads"]}]},
            "host-tar": {"dl_dir": "tar", "downloads": [{"source": "tar-1.35.cpio.gz", "uris": ["https+https://ftp.gnu.org/gnu/tar"]}]}
        });
        let downloads = downloads_from_show_info(&info);
        let order: Vec<_> = downloads.iter().map(|d| d.package.as_str()).collect();
        assert_eq!(
            order,
            ["toolchain-external-bootlin", "linux", "host-tar"],
            "toolchain, target, host"
        );
        assert_eq!(downloads[1].uris.len(), 2);
        assert_eq!(downloads[2].file, "tar-1.35.cpio.gz");
    }

    #[test]
    fn a_download_is_fetchable_when_any_of_its_hosts_answers() {
        let d = |name: &str, uris: &[&str]| Download {
            package: name.into(),
            dl_dir: name.into(),
            file: format!("{name}.tar.gz"),
            uris: uris.iter().map(|u| u.to_string()).collect(),
        };
        let missing = vec![
            d(
                "a",
                &[
                    "https+https://down.example/a",
                    "https+https://mirror.example/a",
                ],
            ),
            d("b", &["https+https://down.example/b"]),
            d("c", &["file+/srv/c"]),
            d("e", &[]),
        ];
        let reachable = |uri: &str| endpoint(uri).is_none_or(|e| e.host == "mirror.example");
        let names: Vec<_> = unfetchable(&missing, &reachable)
            .iter()
            .map(|d| d.package.as_str())
            .collect();
        assert_eq!(names, ["b", "e"]);
    }

    #[test]
    fn report_names_files_hosts_and_the_way_out() {
        let downloads: Vec<Download> = (0..14)
            .map(|i| Download {
                package: format!("p{i}"),
                dl_dir: format!("p{i}"),
                file: format!("p{i}-1.0.tar.gz"),
                uris: vec![format!("https+https://example.org/p{i}")],
            })
            .collect();
        let refs: Vec<&Download> = downloads.iter().collect();
        let failed = [(ep("example.org", 443), "name not resolved".to_string())];
        let text = report(
            &refs,
            &failed,
            &BTreeSet::new(),
            Path::new("/c/dl"),
            Duration::from_secs(3),
        );
        assert!(
            text.contains("no host offering them could be reached (checked for 3.0s; no network?)"),
            "{text}"
        );
        assert!(
            text.contains("14 file(s) are missing from the download cache /c/dl"),
            "{text}"
        );
        assert!(
            text.contains("  - p0/p0-1.0.tar.gz (package p0, from https://example.org/p0)"),
            "{text}"
        );
        assert!(text.contains("... and 2 more"), "{text}");
        assert!(text.ends_with("pass --skip-network-check."), "{text}");
        assert!(
            text.contains("Unreachable: example.org:443 (name not resolved)"),
            "{text}"
        );
        assert!(!text.contains("Reachable"), "{text}");
        let partly = report(
            &refs,
            &failed,
            &[ep("pypi.org", 443)].into(),
            Path::new("/c/dl"),
            Duration::from_secs(3),
        );
        assert!(
            partly.contains("Reachable, but offering none of the files above: pypi.org:443"),
            "{partly}"
        );
    }

    #[test]
    fn probe_reports_a_closed_port_quickly() {
        // A port nobody listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let endpoints: BTreeSet<_> = [ep("127.0.0.1", port), ep("127.0.0.1", open)].into();
        let started = Instant::now();
        let (reachable, failed) = probe(&endpoints, Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(reachable, [ep("127.0.0.1", open)].into());
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].0, ep("127.0.0.1", port));
    }
}
