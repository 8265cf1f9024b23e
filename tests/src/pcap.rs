//! A minimal classic-pcap writer (nanosecond timestamps, Ethernet), for
//! feeding crafted frames to `tollgate replay` and tshark.

use std::{fs::File, io::Write, path::Path};

/// nanosecond-resolution pcap magic.
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;

/// Writes `frames` (timestamp ns since the epoch, bytes) to `path`.
pub fn write(path: &Path, frames: &[(u64, Vec<u8>)]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(&MAGIC_NS.to_le_bytes())?;
    f.write_all(&2u16.to_le_bytes())?;
    f.write_all(&4u16.to_le_bytes())?;
    f.write_all(&0i32.to_le_bytes())?;
    f.write_all(&0u32.to_le_bytes())?;
    f.write_all(&65_535u32.to_le_bytes())?;
    f.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
    for (ts, data) in frames {
        f.write_all(&((ts / 1_000_000_000) as u32).to_le_bytes())?;
        f.write_all(&((ts % 1_000_000_000) as u32).to_le_bytes())?;
        f.write_all(&(data.len() as u32).to_le_bytes())?;
        f.write_all(&(data.len() as u32).to_le_bytes())?;
        f.write_all(data)?;
    }
    Ok(())
}
