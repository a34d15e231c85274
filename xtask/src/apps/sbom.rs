//! The preloaded apps in the CycloneDX SBOM: one `container` component per app, with the
//! archive's SHA-256 and the image's digests.

use std::path::Path;

use anyhow::{Context, Result};

use super::AppRecord;

/// A package URL of type `oci` for the app's image manifest (purl-spec: the digest is the
/// version, percent-encoded; the repository goes in `repository_url`).
pub fn purl(record: &AppRecord) -> String {
    let repository = record.image.split('@').next().unwrap_or(&record.image);
    let name = repository.rsplit('/').next().unwrap_or(repository);
    let name = name.split(':').next().unwrap_or(name);
    format!(
        "pkg:oci/{name}@{}?arch=arm&variant=v7&repository_url={repository}",
        record.manifest_digest.replace(':', "%3A")
    )
}

/// The component of one app. Pure.
pub fn component(record: &AppRecord) -> serde_json::Value {
    serde_json::json!({
        "type": "container",
        "bom-ref": format!("berth-app:{}", record.name),
        "name": record.name,
        "version": record.manifest_digest,
        "purl": purl(record),
        "hashes": [{ "alg": "SHA-256", "content": record.archive_sha256 }],
        "properties": [
            { "name": "berth:image", "value": record.image },
            { "name": "berth:image-id", "value": record.image_id },
            { "name": "berth:archive", "value": record.archive },
        ],
    })
}

/// Add the apps to the SBOM at `path` (written by Buildroot's generate-cyclonedx).
pub fn add_to(path: &Path, records: &[AppRecord]) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read {}", path.display()))?;
    let mut doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let components = doc["components"]
        .as_array_mut()
        .with_context(|| format!("{} has no components list", path.display()))?;
    components.extend(records.iter().map(component));
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("could not write {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("could not write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apps_become_container_components() {
        let record = AppRecord {
            name: "web".into(),
            image: "docker.io/library/busybox@sha256:aa".into(),
            manifest_digest: "sha256:bb".into(),
            image_id: "sha256:cc".into(),
            archive: "/usr/share/berth/apps/web.tar".into(),
            archive_sha256: "dd".into(),
            archive_size: 1,
        };
        assert_eq!(
            purl(&record),
            "pkg:oci/busybox@sha256%3Abb?arch=arm&variant=v7&repository_url=docker.io/library/busybox"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sbom.cdx.json");
        std::fs::write(
            &path,
            r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[{"name":"busybox"}]}"#,
        )
        .unwrap();
        add_to(&path, &[record]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        crate::sbom::check_sbom(&text).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["components"][1]["type"], "container");
        assert_eq!(doc["components"][1]["hashes"][0]["content"], "dd");
    }
}
