//! The user's `authorized_keys` file baked into the image (SSH is key-only; there is no password).
//! Checked before any long work: it must hold at least one well-formed public key and never a
//! private key, since whatever it holds ends up readable in the image.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Key types current OpenSSH accepts (DSA is gone since OpenSSH 9.8).
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Markers of private key files (OpenSSH, PEM, PuTTY).
const PRIVATE_MARKERS: &[&str] = &["PRIVATE KEY-----", "PuTTY-User-Key-File"];

/// Check an authorized_keys text; returns how many keys it holds.
pub fn check(text: &str, name: &str) -> Result<usize> {
    if PRIVATE_MARKERS.iter().any(|m| text.contains(m)) {
        bail!(
            "{name} holds a PRIVATE key; give the public key instead (the `.pub` file, \
             e.g. ~/.ssh/id_ed25519.pub) — a private key must never go into an image"
        );
    }
    let mut keys = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{name}:{}", index + 1);
        let tokens: Vec<&str> = line.split_whitespace().collect();
        // Options (`from="..."`, `no-pty`, ...) may precede the key type.
        let Some(position) = tokens.iter().position(|t| KEY_TYPES.contains(t)) else {
            bail!(
                "{at} is not an OpenSSH public key line (expected one of {} followed by the key)",
                KEY_TYPES.join(", ")
            );
        };
        let key_type = tokens[position];
        let blob = tokens
            .get(position + 1)
            .with_context(|| format!("{at}: the {key_type} key itself is missing"))?;
        let decoded = base64_decode(blob)
            .with_context(|| format!("{at}: the {key_type} key is not valid base64"))?;
        if embedded_type(&decoded) != Some(key_type.as_bytes()) {
            bail!("{at}: the key data does not match its type {key_type} (truncated or pasted wrongly?)");
        }
        keys += 1;
    }
    if keys == 0 {
        bail!("{name} contains no public key (only blank or comment lines)");
    }
    Ok(keys)
}

/// Read and check the file; the error says which flag or setting to fix.
pub fn check_file(path: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "could not read the SSH authorized_keys file {} (set it with --ssh-authorized-keys FILE \
             or `ssh_authorized_keys` in berth.toml)",
            path.display()
        )
    })?;
    check(&text, &path.display().to_string())
}

/// An SSH key blob starts with its type as a length-prefixed string.
fn embedded_type(blob: &[u8]) -> Option<&[u8]> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    blob.get(4..4 + len)
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let body = text.trim_end_matches('=');
    if !text.len().is_multiple_of(4) || text.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in body.bytes() {
        acc = (acc << 6) | u32::from(value(c)?);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A well-formed ed25519 public key line (type, 32 key bytes, comment).
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGp0b3hYbEtWc3Jtc0N6b2ZxVnVGbUJ6a0hUa1ZvRHVx user@host";

    #[test]
    fn accepts_keys_with_options_and_comments() {
        let text = format!("# my keys\n\n{ED25519}\nfrom=\"10.0.0.0/8\",no-pty {ED25519}\n");
        assert_eq!(check(&text, "keys").unwrap(), 2);
    }

    #[test]
    fn refuses_private_keys() {
        let text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
        let err = check(text, "id_ed25519").unwrap_err().to_string();
        assert!(err.contains("id_ed25519 holds a PRIVATE key"), "{err}");
        assert!(err.contains(".pub"), "{err}");
    }

    #[test]
    fn refuses_files_without_keys_or_with_garbage() {
        assert!(check("# nothing\n\n", "k")
            .unwrap_err()
            .to_string()
            .contains("contains no public key"));
        let err = check("hello world\n", "k").unwrap_err().to_string();
        assert!(
            err.starts_with("k:1 is not an OpenSSH public key line"),
            "{err}"
        );
        let err = check("ssh-ed25519\n", "k").unwrap_err().to_string();
        assert!(
            err.contains("k:1: the ssh-ed25519 key itself is missing"),
            "{err}"
        );
        let err = format!("{:#}", check("ssh-ed25519 not*base64\n", "k").unwrap_err());
        assert!(err.contains("not valid base64"), "{err}");
    }

    #[test]
    fn refuses_a_blob_of_another_type() {
        let err = check(&ED25519.replacen("ssh-ed25519", "ssh-rsa", 1), "k")
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match its type ssh-rsa"), "{err}");
        let truncated = "ssh-ed25519 AAAAC3Nz";
        assert!(check(truncated, "k").is_err());
    }

    #[test]
    fn decodes_base64() {
        assert_eq!(base64_decode("aGVsbG8="), Some(b"hello".to_vec()));
        assert_eq!(base64_decode("aGVsbG8h"), Some(b"hello!".to_vec()));
        assert_eq!(base64_decode("aGVsbG8"), None, "unpadded length");
        assert_eq!(
            embedded_type(&base64_decode("AAAAC3NzaC1lZDI1").unwrap()),
            None,
            "cut short"
        );
        assert_eq!(
            embedded_type(&base64_decode("AAAAC3NzaC1lZDI1NTE5").unwrap()),
            Some(&b"ssh-ed25519"[..])
        );
    }
}
