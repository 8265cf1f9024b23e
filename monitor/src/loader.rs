//! Loading the XDP object.
use anyhow::Context as _;

/// The compiled XDP object, built by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tollgate-ebpf"));

pub fn load() -> anyhow::Result<aya::Ebpf> {
    aya::EbpfLoader::new()
        .set_max_entries(monitor_common::maps::SOURCES, 1024)
        .load(OBJECT)
        .context("loading the XDP object")
}
