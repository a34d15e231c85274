//! Fetch an app's image for `linux/arm/v7` by digest with `oci-client`, checking every digest
//! here rather than trusting the transport: the manifest (or index) against the pinned digest,
//! the platform manifest against the index entry, each blob against its descriptor.

use anyhow::{bail, Context, Result};
use base64::Engine;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::oci::{self, Descriptor, Fetched};
use super::spec::ImageRef;
use crate::host::Host;

/// An image as fetched and checked: its platform manifest, config and layers.
pub struct Image {
    pub manifest: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub config_digest: String,
    pub config_bytes: Vec<u8>,
    /// `(digest, bytes)` in manifest order.
    pub layers: Vec<(String, Vec<u8>)>,
}

/// A registry client for `image`'s registry: plain HTTP only for a registry on this machine's
/// loopback (digests are checked either way), HTTPS through the host's proxies otherwise.
pub fn client_for(image: &ImageRef, host: &Host) -> Client {
    let name = image
        .registry
        .rsplit_once(':')
        .map_or(image.registry.as_str(), |(h, _)| h);
    let loopback = matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    let env = |name: &str| host.proxy(name).map(str::to_string);
    Client::new(ClientConfig {
        protocol: if loopback {
            ClientProtocol::HttpsExcept(vec![image.registry.clone()])
        } else {
            ClientProtocol::Https
        },
        // A pull by digest has nothing to choose: the index is read here instead.
        platform_resolver: None,
        https_proxy: env("https_proxy"),
        http_proxy: env("http_proxy"),
        no_proxy: env("no_proxy"),
        ..ClientConfig::default()
    })
}

/// Basic credentials for `registry` from Docker's config file (`$DOCKER_CONFIG/config.json` or
/// `~/.docker/config.json`, the `auths` entries `docker login` writes), else anonymous.
pub fn auth_for(registry: &str, host: &Host) -> Result<RegistryAuth> {
    let Some(path) = host
        .docker_config
        .as_ref()
        .map(|dir| dir.join("config.json"))
    else {
        return Ok(RegistryAuth::Anonymous);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RegistryAuth::Anonymous),
        Err(e) => return Err(e).with_context(|| format!("could not read {}", path.display())),
    };
    auth_from_docker_config(&text, registry)
        .with_context(|| format!("could not read the registry login in {}", path.display()))
}

/// The `auth` (base64 `user:password`) of `registry` in a Docker config. Docker Hub's entry is
/// keyed by its old index URL.
pub fn auth_from_docker_config(text: &str, registry: &str) -> Result<RegistryAuth> {
    let doc: serde_json::Value = serde_json::from_str(text).context("it is not JSON")?;
    let keys = match registry {
        "docker.io" | "index.docker.io" => vec!["https://index.docker.io/v1/", "docker.io"],
        r => vec![r],
    };
    let Some(entry) = keys.iter().find_map(|k| {
        doc["auths"].as_object().and_then(|auths| {
            auths.iter().find_map(|(key, v)| {
                let host = key
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                (key == k || host.split('/').next() == Some(k)).then_some(v)
            })
        })
    }) else {
        return Ok(RegistryAuth::Anonymous);
    };
    let Some(encoded) = entry["auth"].as_str() else {
        return Ok(RegistryAuth::Anonymous);
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .with_context(|| format!("the auth of {registry} is not base64"))?;
    let text = String::from_utf8(decoded)
        .with_context(|| format!("the auth of {registry} is not text"))?;
    let Some((user, password)) = text.split_once(':') else {
        bail!("the auth of {registry} is not user:password");
    };
    Ok(RegistryAuth::Basic(user.into(), password.into()))
}

/// Fetch `image` for `linux/arm/v7`, every digest checked.
pub fn fetch(image: &ImageRef, host: &Host) -> Result<Image> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime for the registry client")?;
    runtime.block_on(fetch_async(image, host))
}

async fn fetch_async(image: &ImageRef, host: &Host) -> Result<Image> {
    let client = client_for(image, host);
    let auth = auth_for(&image.registry, host)?;
    let pinned = Reference::with_digest(
        image.registry.clone(),
        image.repository.clone(),
        image.digest.clone(),
    );
    let what = image.to_string();
    let (bytes, _) = client
        .pull_manifest_raw(&pinned, &auth, oci::ACCEPTED)
        .await
        .with_context(|| format!("could not fetch the manifest of {what}"))?;
    oci::check_digest(&bytes, &image.digest, &format!("the manifest of {what}"))?;
    let (manifest, manifest_bytes, from_index) = match oci::parse_manifest(&bytes, &what)? {
        Fetched::Image(m) => {
            let d = Descriptor {
                media_type: media_type_of(&bytes),
                digest: image.digest.clone(),
                size: bytes.len() as u64,
                platform: None,
            };
            (m, bytes.to_vec(), d)
        }
        Fetched::Index(entries) => {
            let entry = oci::pick_board_platform(&entries, &what)?.clone();
            let by_digest = pinned.clone_with_digest(entry.digest.clone());
            let (bytes, _) = client
                .pull_manifest_raw(&by_digest, &auth, oci::ACCEPTED)
                .await
                .with_context(|| format!("could not fetch the linux/arm/v7 manifest of {what}"))?;
            let label = format!("the linux/arm/v7 manifest of {what}");
            oci::check_digest(&bytes, &entry.digest, &label)?;
            let Fetched::Image(m) = oci::parse_manifest(&bytes, &label)? else {
                bail!("{label} is another index, not an image manifest");
            };
            (m, bytes.to_vec(), entry)
        }
    };
    let config_bytes = pull_checked(
        &client,
        &pinned,
        &manifest.config,
        &format!("the config of {what}"),
    )
    .await?;
    oci::check_config_platform(&config_bytes, &what)?;
    let mut layers = Vec::new();
    for (n, layer) in manifest.layers.iter().enumerate() {
        let label = format!("layer {} of {what}", n + 1);
        layers.push((
            layer.digest.clone(),
            pull_checked(&client, &pinned, layer, &label).await?,
        ));
    }
    Ok(Image {
        manifest: from_index,
        manifest_bytes,
        config_digest: manifest.config.digest.clone(),
        config_bytes,
        layers,
    })
}

fn media_type_of(manifest: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(manifest)
        .ok()
        .and_then(|v| v["mediaType"].as_str().map(String::from))
        .unwrap_or_else(|| oci::OCI_MANIFEST.into())
}

/// One blob, refused unless its size and digest are the descriptor's.
async fn pull_checked(
    client: &Client,
    image: &Reference,
    descriptor: &Descriptor,
    what: &str,
) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    client
        .pull_blob(image, descriptor.digest.as_str(), &mut bytes)
        .await
        .with_context(|| format!("could not fetch {what} ({})", descriptor.digest))?;
    if bytes.len() as u64 != descriptor.size {
        bail!(
            "{what} is {} bytes, not the {} its manifest gives",
            bytes.len(),
            descriptor.size
        );
    }
    oci::check_digest(&bytes, &descriptor.digest, what)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_come_from_the_docker_config() {
        // "user:secret"
        let config = r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpzZWNyZXQ="},"ghcr.io":{"auth":"YTpi"}}}"#;
        let basic = |user: &str, pass: &str| RegistryAuth::Basic(user.into(), pass.into());
        assert_eq!(
            auth_from_docker_config(config, "docker.io").unwrap(),
            basic("user", "secret")
        );
        assert_eq!(
            auth_from_docker_config(config, "ghcr.io").unwrap(),
            basic("a", "b")
        );
        assert_eq!(
            auth_from_docker_config(config, "quay.io").unwrap(),
            RegistryAuth::Anonymous
        );
        let helper_only = r#"{"auths":{"ghcr.io":{}},"credsStore":"desktop"}"#;
        assert_eq!(
            auth_from_docker_config(helper_only, "ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        );
        assert!(
            auth_from_docker_config(r#"{"auths":{"ghcr.io":{"auth":"!!"}}}"#, "ghcr.io").is_err()
        );
    }
}
