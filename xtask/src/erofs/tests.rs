use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

/// A tree with what a root filesystem has: a setuid program, foreign owners, a sticky folder,
/// a folder of many blocks, short and long links, a compressible file and an incompressible one.
fn make_tree(root: &Path) {
    let write = |rel: &str, body: &[u8], mode: u32| {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    write("etc/hostname", b"berth\n", 0o644);
    write("usr/bin/su", b"\x7fELF not really", 0o4755);
    write(
        "usr/share/big.txt",
        "berth ".repeat(50_000).as_bytes(),
        0o644,
    );
    let noise: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write("usr/share/noise.bin", &noise, 0o600);
    for i in 0..300 {
        write(
            &format!("usr/lib/many/file-with-a-long-name-{i:04}"),
            b"x",
            0o644,
        );
    }
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::symlink("bin", root.join("usr/sbin")).unwrap();
    std::os::unix::fs::symlink("x".repeat(300), root.join("usr/long-link")).unwrap();
    // Owners other than the builder's need root; without it the image keeps the builder's.
    let _ = std::os::unix::fs::lchown(root.join("etc/hostname"), Some(5), Some(7));
    let _ = std::os::unix::fs::lchown(root.join("usr/bin/su"), Some(0), Some(0));
    // chown clears setuid: set it after.
    std::fs::set_permissions(
        root.join("usr/bin/su"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
}

/// `mkfs.erofs` with LZ4HC as the defconfig chooses; `None` (after one skip line) without it.
fn image_of(test: &str, tree: &Path, image: &Path) -> Option<ErofsImage> {
    let made = std::process::Command::new("mkfs.erofs")
        .args(["--quiet", "-zlz4hc,12", "-T", "0"])
        .arg(image)
        .arg(tree)
        .status();
    if !made.is_ok_and(|s| s.success()) {
        crate::util::skip(
            test,
            "mkfs.erofs is not installed (apt-get install erofs-utils)",
        );
        return None;
    }
    Some(ErofsImage::open(image).unwrap())
}

#[test]
fn reads_owners_modes_links_and_contents_as_the_tree_had_them() {
    let test = "reads_owners_modes_links_and_contents_as_the_tree_had_them";
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    make_tree(&tree);
    // A verity tree or a slot's padding after the filesystem must not matter.
    let image_path = dir.path().join("system.img");
    let Some(_) = image_of(test, &tree, &image_path) else {
        return;
    };
    let mut bytes = std::fs::read(&image_path).unwrap();
    bytes.extend(vec![0xa5; 8192]);
    std::fs::write(&image_path, bytes).unwrap();
    let fs = ErofsImage::open(&image_path).unwrap();

    let walked = fs.walk().unwrap();
    let expected: Vec<String> = walkdir::WalkDir::new(&tree)
        .min_depth(1)
        .into_iter()
        .map(|e| {
            format!(
                "/{}",
                e.unwrap().path().strip_prefix(&tree).unwrap().display()
            )
        })
        .collect();
    assert_eq!(walked.len(), expected.len());
    for path in &expected {
        let meta = std::fs::symlink_metadata(tree.join(&path[1..])).unwrap();
        let stat = walked[path];
        assert_eq!(
            (stat.mode, stat.uid, stat.gid, stat.is_dir, stat.is_symlink),
            (
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                meta.is_dir(),
                meta.file_type().is_symlink()
            ),
            "{path}"
        );
    }
    assert_eq!(walked["/usr/bin/su"].mode, 0o4755);
    assert_eq!(walked["/tmp"].mode, 0o1777);
    assert_eq!(fs.list("/usr/lib/many").unwrap().unwrap().len(), 300);

    assert_eq!(fs.read("/etc/hostname").unwrap().unwrap(), b"berth\n");
    for rel in ["usr/share/big.txt", "usr/share/noise.bin"] {
        assert_eq!(
            fs.read(&format!("/{rel}")).unwrap().unwrap(),
            std::fs::read(tree.join(rel)).unwrap(),
            "{rel}"
        );
    }
    assert_eq!(fs.raw_readlink("/usr/sbin").unwrap(), "bin");
    assert_eq!(fs.raw_readlink("/usr/long-link").unwrap(), "x".repeat(300));
    assert!(fs.stat("/usr/sbin/su").unwrap().is_some());
    assert!(fs.stat("/usr/nope").unwrap().is_none());

    // The snapshot `cargo xtask diff` compares keeps the setuid bit the extraction loses as root.
    let snap = fs.snapshot(&dir.path().join("out")).unwrap();
    assert!(
        matches!(snap["/usr/bin/su"], Entry::File { mode: 0o4755, .. }),
        "{:?}",
        snap["/usr/bin/su"]
    );
    assert_eq!(snap.len(), expected.len());
}

#[test]
fn refuses_what_is_no_erofs_image_or_is_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("rootfs.ext4");
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    let err = format!("{:#}", ErofsImage::open(&junk).err().unwrap());
    assert!(err.contains("is not an EROFS image"), "{err}");
    let missing = format!(
        "{:#}",
        ErofsImage::open(&dir.path().join("absent")).err().unwrap()
    );
    assert!(missing.contains("could not open"), "{missing}");

    let test = "refuses_what_is_no_erofs_image_or_is_cut_short";
    let tree = dir.path().join("tree");
    make_tree(&tree);
    let image = dir.path().join("root.erofs");
    let Some(_) = image_of(test, &tree, &image) else {
        return;
    };
    let bytes = std::fs::read(&image).unwrap();
    std::fs::write(&image, &bytes[..bytes.len() - 4096]).unwrap();
    let err = format!("{:#}", ErofsImage::open(&image).err().unwrap());
    assert!(err.contains("cut short"), "{err}");
}

#[test]
fn ownership_from_the_image_replaces_what_the_extraction_left() {
    let file = |mode| Entry::File {
        size: 1,
        sha256: "ab".into(),
        mode,
        owner: (0, 0),
    };
    let mut snap = BTreeMap::from([
        ("/usr/bin/su".to_string(), file(0o755)),
        (
            "/usr/sbin".to_string(),
            Entry::Symlink {
                target: "bin".into(),
            },
        ),
    ]);
    let stat = Stat {
        mode: 0o4755,
        uid: 0,
        gid: 12,
        is_dir: false,
        is_symlink: false,
    };
    apply_ownership(
        &mut snap,
        &BTreeMap::from([("/usr/bin/su".to_string(), stat)]),
    );
    assert_eq!(
        snap["/usr/bin/su"],
        Entry::File {
            size: 1,
            sha256: "ab".into(),
            mode: 0o4755,
            owner: (0, 12)
        }
    );
    assert_eq!(
        snap["/usr/sbin"],
        Entry::Symlink {
            target: "bin".into()
        }
    );
}
