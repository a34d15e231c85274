//! Scratch copies of disk images that cost disk only for their data: runs of zeros become holes.
//! Used by `verify` (decompressing a release) and `diff` (copying a partition out of an image).

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A file written chunk by chunk, where a chunk of zeros is skipped over rather than written.
pub struct SparseFile {
    file: File,
    path: PathBuf,
    len: u64,
}

impl SparseFile {
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path)
            .with_context(|| format!("could not create the scratch file {}", path.display()))?;
        Ok(SparseFile {
            file,
            path: path.to_path_buf(),
            len: 0,
        })
    }

    /// Appends `chunk`: written when it holds data, a hole when it is all zeros.
    pub fn append(&mut self, chunk: &[u8]) -> Result<()> {
        if chunk.iter().all(|&b| b == 0) {
            self.file
                .seek(SeekFrom::Current(chunk.len() as i64))
                .with_context(|| {
                    format!("could not seek in the scratch file {}", self.path.display())
                })?;
        } else {
            self.file.write_all(chunk).with_context(|| {
                format!("could not write the scratch file {}", self.path.display())
            })?;
        }
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// Sets the file's length to what was appended, so a trailing hole counts.
    pub fn finish(self) -> Result<()> {
        self.file
            .set_len(self.len)
            .with_context(|| format!("could not size the scratch file {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_chunks_read_back_as_zeros_and_a_trailing_hole_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse.img");
        let mut file = SparseFile::create(&path).unwrap();
        file.append(&[0; 4096]).unwrap();
        file.append(b"data").unwrap();
        file.append(&[0; 8192]).unwrap();
        file.finish().unwrap();
        let mut want = vec![0u8; 4096];
        want.extend_from_slice(b"data");
        want.extend_from_slice(&[0; 8192]);
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
