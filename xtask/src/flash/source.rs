//! The image's bytes in order: a plain file read in place, or xz / gzip decoded on the fly.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};

use super::interrupt::check_interrupted;
use super::policy::CHUNK;
use crate::util::hex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Xz,
    Gzip,
}

/// Recognises xz and gzip by their magic bytes, whatever the file is called.
pub fn compression_of(magic: &[u8]) -> Compression {
    if magic.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Compression::Xz
    } else if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else {
        Compression::None
    }
}

pub fn detect_compression(path: &Path) -> Result<Compression> {
    let mut magic = [0u8; 6];
    let mut file = open_image(path)?;
    let n = file
        .read(&mut magic)
        .with_context(|| format!("could not read {}", path.display()))?;
    Ok(compression_of(&magic[..n]))
}

fn open_image(path: &Path) -> Result<File> {
    File::open(path).with_context(|| format!("could not open image {}", path.display()))
}

/// Where the bytes come from.
enum Input {
    /// A plain image, read at any offset (skipping costs nothing).
    Plain(File),
    /// A compressed image, decoded in order (skipping decodes and drops).
    Stream(Box<dyn Read>),
}

/// The image's bytes in order: read in place for a plain file, decoded on the fly otherwise.
pub struct Source {
    input: Input,
    pos: u64,
    path: PathBuf,
}

impl Source {
    pub fn open(path: &Path, compression: Compression) -> Result<Source> {
        let file = open_image(path)?;
        let input = match compression {
            Compression::None => Input::Plain(file),
            Compression::Xz => Input::Stream(Box::new(
                liblzma::read::XzDecoder::new_multi_decoder(BufReader::new(file)),
            )),
            Compression::Gzip => Input::Stream(Box::new(flate2::read::MultiGzDecoder::new(
                BufReader::new(file),
            ))),
        };
        Ok(Source {
            input,
            pos: 0,
            path: path.to_path_buf(),
        })
    }

    pub fn is_stream(&self) -> bool {
        matches!(self.input, Input::Stream(_))
    }

    /// Fills `buf` from the current position; an early end of the image is an error.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        let result = match &mut self.input {
            Input::Plain(file) => file.read_exact_at(buf, self.pos),
            Input::Stream(stream) => stream.read_exact(buf),
        };
        result.with_context(|| {
            format!(
                "could not read {} at byte {} (is it truncated or corrupt?)",
                self.path.display(),
                self.pos
            )
        })?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    /// Moves forward to `target`, decoding and dropping the bytes between for a stream.
    pub fn skip_to(&mut self, target: u64, buf: &mut [u8]) -> Result<()> {
        ensure!(target >= self.pos, "internal error: ranges out of order");
        if !self.is_stream() {
            self.pos = target;
            return Ok(());
        }
        while self.pos < target {
            let n = ((target - self.pos) as usize).min(buf.len());
            self.read_exact(&mut buf[..n])?;
        }
        Ok(())
    }

    /// Reads a stream to its end (so the format's own integrity check runs), handing each piece
    /// to `seen`, and returns the image's length.
    fn drain(&mut self, buf: &mut [u8], mut seen: impl FnMut(&[u8])) -> Result<u64> {
        if let Input::Stream(stream) = &mut self.input {
            loop {
                check_interrupted()?;
                let n = stream.read(buf).with_context(|| {
                    format!(
                        "{} is truncated or corrupt after byte {}",
                        self.path.display(),
                        self.pos
                    )
                })?;
                if n == 0 {
                    break;
                }
                seen(&buf[..n]);
                self.pos += n as u64;
            }
        }
        Ok(self.pos)
    }

    /// Reads a stream to its end (so the format's own integrity check runs) and returns its length.
    pub fn finish(&mut self, buf: &mut [u8]) -> Result<u64> {
        self.drain(buf, |_| {})
    }
}

/// Decompresses a whole image once, for its length and sha256 (compressed image without a map).
pub fn measure(path: &Path, compression: Compression) -> Result<(u64, String)> {
    let mut source = Source::open(path, compression)?;
    ensure!(source.is_stream(), "internal error: measuring a plain file");
    let mut hasher = Sha256::new();
    let len = source.drain(&mut vec![0u8; CHUNK], |bytes| hasher.update(bytes))?;
    Ok((len, hex(&hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_pick_the_decoder() {
        assert_eq!(
            compression_of(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(compression_of(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(compression_of(&[0x55, 0xaa]), Compression::None);
        assert_eq!(compression_of(&[]), Compression::None);
    }

    #[test]
    fn a_gzip_stream_is_measured_and_skipped_through() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.gz");
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut encoder =
            flate2::write::GzEncoder::new(File::create(&path).unwrap(), Default::default());
        encoder.write_all(&bytes).unwrap();
        encoder.finish().unwrap();
        assert_eq!(detect_compression(&path).unwrap(), Compression::Gzip);
        let (len, sum) = measure(&path, Compression::Gzip).unwrap();
        assert_eq!((len, sum), (100_000, crate::util::sha256_hex(&bytes)));
        let mut source = Source::open(&path, Compression::Gzip).unwrap();
        let mut buf = vec![0u8; 4096];
        source.skip_to(50_000, &mut buf).unwrap();
        let mut piece = [0u8; 10];
        source.read_exact(&mut piece).unwrap();
        assert_eq!(piece[..], bytes[50_000..50_010]);
        assert_eq!(source.finish(&mut buf).unwrap(), 100_000);
    }
}
