//! Reading the files a config names, with the safety rails of DESIGN.md ("Reload safety
//! rails"): only regular files, and never more than a bound.
//!
//! A FIFO would block `open` until a writer appears (a `geode check` that never ends) and
//! a device such as `/dev/urandom` never reaches end of file; both are refused before a
//! byte is read. The file is opened non-blocking and checked again through the open
//! descriptor, so a path swapped for a FIFO between the two checks is still refused.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest config file read (16 MiB): a config is a few KiB; more is a wrong path.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;
/// Largest GeoIP database read (1 GiB): a full GeoIP2-City is ~130 MB.
pub const MAX_GEOIP_BYTES: u64 = 1 << 30;

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// `open` or `read` failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A FIFO, device, socket or directory.
    #[error("not a regular file (it is a {0}); give the path of a regular file")]
    NotRegular(&'static str),
    /// Larger than the bound.
    #[error("file is larger than {limit} bytes ({what}); is this the right file?")]
    TooLarge {
        /// The bound.
        limit: u64,
        /// What the bound is for.
        what: &'static str,
    },
}

fn kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_fifo() {
        "FIFO"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_dir() {
        "directory"
    } else {
        "special file"
    }
}

/// Reads the whole regular file at `path` (symlinks followed), at most `limit` bytes.
/// `what` names the bound in the error (`"server.geoip_db"`).
pub fn read_regular(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
    // Checked before opening: opening a FIFO for reading blocks until a writer comes.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(meta.file_type())));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegular(kind(meta.file_type())));
    }
    if meta.len() > limit {
        return Err(ReadError::TooLarge { limit, what });
    }
    read_bounded(file, meta.len(), limit, what)
}

/// Reads to end of file but never past `limit` (the file may grow while it is read).
fn read_bounded(
    file: File,
    hint: u64,
    limit: u64,
    what: &'static str,
) -> Result<Vec<u8>, ReadError> {
    // Exactly the size stat gave, so a 56 MB database is one allocation, not a doubling
    // series whose last step would hold twice its size for a moment.
    let mut buf = Vec::with_capacity(usize::try_from(hint.min(limit)).unwrap_or(0));
    file.take(limit + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit, what });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(read_regular(&p, 16, "test").unwrap(), b"hello");
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fifo");
        let ok = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap();
        assert!(ok.success());
        let err = read_regular(&p, 16, "test").unwrap_err().to_string();
        assert!(err.contains("not a regular file (it is a FIFO)"), "{err}");
    }

    #[test]
    fn devices_and_directories_are_refused() {
        let err = read_regular(Path::new("/dev/urandom"), 16, "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("character device"), "{err}");
        let err = read_regular(Path::new("/"), 16, "test")
            .unwrap_err()
            .to_string();
        assert!(err.contains("directory"), "{err}");
    }

    #[test]
    fn files_over_the_bound_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [0u8; 17]).unwrap();
        let err = read_regular(&p, 16, "test").unwrap_err().to_string();
        assert!(err.contains("larger than 16 bytes (test)"), "{err}");
        std::fs::write(&p, [0u8; 16]).unwrap();
        assert_eq!(read_regular(&p, 16, "test").unwrap().len(), 16);
    }
}
