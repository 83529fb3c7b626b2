//! Shared by the benches that replay the dnsperf workload in-process (fast, qpath).

use std::path::Path;

/// The messages of a dnsperf `-B` file (each prefixed by its 2-byte big-endian length);
/// `None` when the file is missing or cut short.
pub fn load_messages(path: &Path) -> Option<Vec<Vec<u8>>> {
    let data = std::fs::read(path).ok()?;
    let mut out = Vec::new();
    let mut at = 0;
    while at + 2 <= data.len() {
        let len = usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
        out.push(data.get(at + 2..at + 2 + len)?.to_vec());
        at += 2 + len;
    }
    Some(out)
}
