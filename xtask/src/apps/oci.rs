//! OCI documents and the image-layout archive, without the network: digests, picking
//! `linux/arm/v7` from an index, and writing the tar that `docker load` takes.

use std::io::Write;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The manifest media types asked of a registry.
pub const ACCEPTED: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];
/// The board's platform.
pub const PLATFORM: (&str, &str, &str) = ("linux", "arm", "v7");

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", crate::util::sha256_hex(bytes))
}

/// Refuse `bytes` unless they hash to `expected`; `what` names them in the error.
pub fn check_digest(bytes: &[u8], expected: &str, what: &str) -> Result<()> {
    let actual = digest_of(bytes);
    if actual != expected {
        bail!("{what} has the digest {actual}, not the expected {expected}: the registry sent other content than was pinned");
    }
    Ok(())
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Platform {
    fn is_board(&self) -> bool {
        (
            self.os.as_str(),
            self.architecture.as_str(),
            self.variant.as_deref(),
        ) == (PLATFORM.0, PLATFORM.1, Some(PLATFORM.2))
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

/// What a manifest request returned: an index of platforms, or one image's manifest.
#[derive(Debug)]
pub enum Fetched {
    Index(Vec<Descriptor>),
    Image(ImageManifest),
}

#[derive(Debug, Clone, Deserialize)]
pub struct ImageManifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct AnyManifest {
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
}

/// Read a manifest or index by its content (an index lists `manifests`).
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<Fetched> {
    let any: AnyManifest = serde_json::from_slice(bytes)
        .with_context(|| format!("{what} is not an OCI or Docker manifest"))?;
    match any {
        AnyManifest {
            manifests: Some(m), ..
        } => Ok(Fetched::Index(m)),
        AnyManifest {
            config: Some(config),
            layers: Some(layers),
            ..
        } => Ok(Fetched::Image(ImageManifest { config, layers })),
        _ => bail!("{what} is neither an image index nor an image manifest"),
    }
}

/// The `linux/arm/v7` entry of an index, or an error naming the platforms it has.
pub fn pick_board_platform<'a>(entries: &'a [Descriptor], what: &str) -> Result<&'a Descriptor> {
    if let Some(found) = entries
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(Platform::is_board))
    {
        return Ok(found);
    }
    let has: Vec<String> = entries
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
        .collect();
    bail!(
        "{what} has no {}/{}/{} image (the board's platform); it has: {}",
        PLATFORM.0,
        PLATFORM.1,
        PLATFORM.2,
        if has.is_empty() {
            "no platforms listed".into()
        } else {
            has.join(", ")
        }
    )
}

#[derive(Deserialize)]
struct ImageConfig {
    os: String,
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

/// Refuse an image config that is not for `linux/arm/v7` (a manifest pinned directly names no
/// platform; its config does).
pub fn check_config_platform(config: &[u8], what: &str) -> Result<()> {
    let c: ImageConfig = serde_json::from_slice(config)
        .with_context(|| format!("the config of {what} is not an image configuration"))?;
    let platform = Platform {
        os: c.os,
        architecture: c.architecture,
        variant: c.variant,
    };
    if !platform.is_board() {
        bail!(
            "{what} is an image for {platform}, not {}/{}/{}",
            PLATFORM.0,
            PLATFORM.1,
            PLATFORM.2
        );
    }
    Ok(())
}

/// One content-addressed file of the archive.
pub struct Blob<'a> {
    pub digest: &'a str,
    pub bytes: &'a [u8],
}

/// Write an OCI image layout as a tar: `oci-layout`, `index.json` naming the image `ref_name`,
/// a Docker `manifest.json` for loaders that look for it, and the blobs. Everything is in a
/// fixed order with fixed metadata, so the same image gives the same archive byte for byte.
pub fn write_layout(
    out: impl Write,
    ref_name: &str,
    manifest: &Descriptor,
    config_digest: &str,
    layer_digests: &[&str],
    blobs: &[Blob],
) -> Result<()> {
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.size,
            "platform": { "os": PLATFORM.0, "architecture": PLATFORM.1, "variant": PLATFORM.2 },
            "annotations": {
                "org.opencontainers.image.ref.name": ref_name,
                "io.containerd.image.name": ref_name,
            },
        }],
    });
    let blob_path = |d: &str| format!("blobs/{}", d.replacen(':', "/", 1));
    let docker_manifest = serde_json::json!([{
        "Config": blob_path(config_digest),
        "RepoTags": [ref_name],
        "Layers": layer_digests.iter().map(|d| blob_path(d)).collect::<Vec<_>>(),
    }]);
    let mut tar = tar::Builder::new(out);
    let mut add = |path: &str, bytes: &[u8]| -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, bytes)
            .with_context(|| format!("could not add {path} to the archive"))
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", serde_json::to_string(&index)?.as_bytes())?;
    add(
        "manifest.json",
        serde_json::to_string(&docker_manifest)?.as_bytes(),
    )?;
    let mut sorted: Vec<&Blob> = blobs.iter().collect();
    sorted.sort_by_key(|b| b.digest);
    sorted.dedup_by_key(|b| b.digest);
    for blob in sorted {
        add(&blob_path(blob.digest), blob.bytes)?;
    }
    tar.into_inner()
        .context("could not finish the archive")?
        .flush()
        .context("could not write the archive")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(platform: &str) -> serde_json::Value {
        let parts: Vec<&str> = platform.split('/').collect();
        serde_json::json!({
            "mediaType": OCI_MANIFEST, "digest": digest_of(platform.as_bytes()), "size": 1,
            "platform": { "os": parts[0], "architecture": parts[1], "variant": parts.get(2) },
        })
    }

    #[test]
    fn an_index_without_arm_v7_names_its_platforms() {
        let index = serde_json::json!({ "manifests": [entry("linux/amd64"), entry("linux/arm64/v8"), entry("linux/arm/v6")] });
        let Fetched::Index(entries) = parse_manifest(index.to_string().as_bytes(), "img").unwrap()
        else {
            panic!("an index")
        };
        let err = pick_board_platform(&entries, "img")
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no linux/arm/v7 image"), "{err}");
        assert!(
            err.contains("linux/amd64, linux/arm64/v8, linux/arm/v6"),
            "{err}"
        );
        let with =
            serde_json::json!({ "manifests": [entry("linux/amd64"), entry("linux/arm/v7")] });
        let Fetched::Index(entries) = parse_manifest(with.to_string().as_bytes(), "img").unwrap()
        else {
            panic!("an index")
        };
        assert_eq!(
            pick_board_platform(&entries, "img").unwrap().digest,
            digest_of(b"linux/arm/v7")
        );
    }

    #[test]
    fn digests_and_platforms_are_checked() {
        assert!(check_digest(b"abc", &digest_of(b"abc"), "blob").is_ok());
        let err = check_digest(b"abd", &digest_of(b"abc"), "blob")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not the expected"), "{err}");
        check_config_platform(
            br#"{"os":"linux","architecture":"arm","variant":"v7"}"#,
            "i",
        )
        .unwrap();
        let err =
            check_config_platform(br#"{"os":"linux","architecture":"amd64"}"#, "i").unwrap_err();
        assert!(
            err.to_string().contains("is an image for linux/amd64"),
            "{err}"
        );
        assert!(parse_manifest(b"{}", "m").is_err());
    }

    #[test]
    fn the_layout_is_complete_and_reproducible() {
        let config = br#"{"os":"linux","architecture":"arm","variant":"v7"}"#;
        let layer = b"layer";
        let (c, l) = (digest_of(config), digest_of(layer));
        let manifest = Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest_of(b"m"),
            size: 1,
            platform: None,
        };
        let blobs = [
            Blob {
                digest: &l,
                bytes: layer,
            },
            Blob {
                digest: &c,
                bytes: config,
            },
            Blob {
                digest: &l,
                bytes: layer,
            },
        ];
        let write = || {
            let mut out = Vec::new();
            write_layout(
                &mut out,
                "berth-apps/web:pinned",
                &manifest,
                &c,
                &[&l],
                &blobs,
            )
            .unwrap();
            out
        };
        let archive = write();
        assert_eq!(archive, write());
        let mut tar = tar::Archive::new(archive.as_slice());
        let names: Vec<String> = tar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        let mut blob_names = [
            format!("blobs/sha256/{}", &c[7..]),
            format!("blobs/sha256/{}", &l[7..]),
        ];
        blob_names.sort();
        assert_eq!(names[..3], ["oci-layout", "index.json", "manifest.json"]);
        assert_eq!(names[3..], blob_names[..]);
    }
}
