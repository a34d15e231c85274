//! A registry on 127.0.0.1 serving a small OCI image made here, shared by the apps tests and the
//! image build with declared apps: a static ARM program made with the cross compiler becomes an
//! image with real digests, pushed to Debian's `docker-registry` (registry:2).
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference};

use xtask::apps::oci;

use crate::common::{have_tool, run_ok};

/// `docker-registry serve` on a free loopback port with its own storage; stopped on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
    storage: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let storage = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = storage.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                storage.path().join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("could not start docker-registry");
        let started = Instant::now();
        while TcpStream::connect(&addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "docker-registry did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Registry {
            child,
            addr,
            storage,
        }
    }

    /// The file the registry keeps a blob in (registry:2's filesystem layout).
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test image as pushed: its digests.
pub struct Pushed {
    pub manifest: String,
    pub config: String,
    pub layer: String,
    /// An index with linux/arm/v7 and linux/amd64.
    pub index: String,
    /// An index with no linux/arm/v7.
    pub index_without_arm: String,
}

/// A static ARM program that prints a line, built with the cross compiler.
pub fn arm_program(dir: &Path) -> Vec<u8> {
    let source = dir.join("hello.c");
    std::fs::write(
        &source,
        "#include <stdio.h>\nint main(void) { puts(\"berth app\"); return 0; }\n",
    )
    .unwrap();
    let binary = dir.join("hello");
    run_ok(
        Command::new("arm-linux-gnueabihf-gcc")
            .args(["-static", "-Os", "-o"])
            .arg(&binary)
            .arg(&source),
    );
    std::fs::read(binary).unwrap()
}

/// A gzip layer holding `/hello`; returns (compressed, uncompressed digest).
pub fn layer(program: &[u8]) -> (Vec<u8>, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_ustar();
    header.set_size(program.len() as u64);
    header.set_mode(0o755);
    header.set_mtime(0);
    tar.append_data(&mut header, "hello", program).unwrap();
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&raw).unwrap();
    (gz.finish().unwrap(), oci::digest_of(&raw))
}

pub fn platform_entry(
    media_type: &str,
    digest: &str,
    size: usize,
    platform: &str,
) -> serde_json::Value {
    let p: Vec<&str> = platform.split('/').collect();
    let mut value = serde_json::json!({
        "mediaType": media_type, "digest": digest, "size": size,
        "platform": { "os": p[0], "architecture": p[1] },
    });
    if let Some(variant) = p.get(2) {
        value["platform"]["variant"] = (*variant).into();
    }
    value
}

pub fn push(registry: &Registry, dir: &Path) -> Pushed {
    let (layer_bytes, diff_id) = layer(&arm_program(dir));
    let config = serde_json::json!({
        "architecture": "arm", "variant": "v7", "os": "linux",
        "config": { "Entrypoint": ["/hello"] },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    })
    .to_string()
    .into_bytes();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": oci::OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": oci::digest_of(&config), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": oci::digest_of(&layer_bytes), "size": layer_bytes.len() }],
    })
    .to_string()
    .into_bytes();
    let index = |platforms: &[&str]| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": oci::OCI_INDEX,
            "manifests": platforms.iter().map(|p| platform_entry(oci::OCI_MANIFEST, &oci::digest_of(&manifest), manifest.len(), p)).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes()
    };
    let with_arm = index(&["linux/amd64", "linux/arm/v7"]);
    let without_arm = index(&["linux/amd64", "linux/arm64/v8"]);
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    });
    let reference =
        |tag: &str| Reference::with_tag(registry.addr.clone(), "berth/hello".into(), tag.into());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let r = reference("latest");
        client
            .push_blob(&r, layer_bytes.clone(), &oci::digest_of(&layer_bytes))
            .await
            .unwrap();
        client
            .push_blob(&r, config.clone(), &oci::digest_of(&config))
            .await
            .unwrap();
        for (tag, body, media_type) in [
            ("arm", &manifest, oci::OCI_MANIFEST),
            ("latest", &with_arm, oci::OCI_INDEX),
            ("no-arm", &without_arm, oci::OCI_INDEX),
        ] {
            client
                .push_manifest_raw(&reference(tag), body.clone(), media_type.parse().unwrap())
                .await
                .unwrap();
        }
    });
    Pushed {
        manifest: oci::digest_of(&manifest),
        config: oci::digest_of(&config),
        layer: oci::digest_of(&layer_bytes),
        index: oci::digest_of(&with_arm),
        index_without_arm: oci::digest_of(&without_arm),
    }
}

/// The registry with the test image, or a printed skip when a tool is missing.
pub fn setup(test: &str) -> Option<(Registry, Pushed, tempfile::TempDir)> {
    if !have_tool(test, "arm-linux-gnueabihf-gcc", "gcc-arm-linux-gnueabihf")
        || !have_tool(test, "docker-registry", "docker-registry")
    {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let pushed = push(&registry, dir.path());
    Some((registry, pushed, dir))
}

/// An apps.toml declaring the app `hello` from `image`, with limits of its own.
pub fn apps_file(dir: &Path, image: &str) -> PathBuf {
    let path = dir.join("apps.toml");
    std::fs::write(
        &path,
        format!("[[app]]\nname = \"hello\"\nimage = \"{image}\"\nmemory = \"16m\"\npids = 8\ncpus = 0.5\n"),
    )
    .unwrap();
    path
}
