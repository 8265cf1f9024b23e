//! Reading pcap and pcapng captures (pcap-parser), Ethernet link type only.
//!
//! A legacy header's link-type field is read as tshark (libpcap) reads
//! it: the link type is its low 16 bits; above them, bit 26 says the
//! frames end in a frame check sequence, whose length (in 16-bit words) is
//! in the top four bits. Such an FCS is cut from each frame: it was never
//! part of what XDP sees.

use std::{fs::File, io::Read, path::Path};

use pcap_parser::{Block, PcapBlockOwned, PcapError};

/// Ethernet, the only link layer XDP sees on the interfaces we attach to.
const LINKTYPE_ETHERNET: i32 = 1;

/// The link type and the FCS length (bytes) in a legacy header's
/// link-type field (libpcap's `LT_LINKTYPE`, `LT_FCS_LENGTH_PRESENT`,
/// `LT_FCS_LENGTH`).
fn legacy_link(field: i32) -> (i32, usize) {
    let raw = field as u32;
    let fcs = if raw & 0x0400_0000 != 0 {
        ((raw >> 28) & 0xf) as usize * 2
    } else {
        0
    };
    ((raw & 0xffff) as i32, fcs)
}

/// One captured frame.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Capture timestamp, ns since the epoch.
    pub ts_ns: u64,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open capture {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a pcap or pcapng file ({detail}); convert it with `editcap -F pcap`")]
    Format { path: String, detail: String },
    #[error(
        "{path}: interface {interface} has link type {linktype}, but only Ethernet (1) can be replayed; capture on the Ethernet interface itself (not `any`)"
    )]
    LinkType {
        path: String,
        interface: usize,
        linktype: i32,
    },
    #[error(
        "{path}: packet {index} refers to interface {interface}, which the file never described"
    )]
    NoInterface {
        path: String,
        index: usize,
        interface: u32,
    },
}

struct Interface {
    linktype: i32,
    /// Units per second.
    resolution: u64,
    offset_s: i64,
}

/// What the reader knows of the file so far: the legacy header's
/// precision and the pcapng interfaces of the current section.
#[derive(Default)]
struct Context {
    legacy_nanos: bool,
    /// Bytes of FCS at the end of each legacy frame.
    legacy_fcs: usize,
    interfaces: Vec<Interface>,
    /// Frames handed out so far.
    count: usize,
}

impl Context {
    /// The frame in `block`, if it is one; header and interface blocks
    /// update the context.
    fn frame(&mut self, shown: &str, block: PcapBlockOwned) -> Result<Option<Frame>, CaptureError> {
        Ok(match block {
            PcapBlockOwned::LegacyHeader(h) => {
                self.legacy_nanos = h.is_nanosecond_precision();
                let (linktype, fcs) = legacy_link(h.network.0);
                if linktype != LINKTYPE_ETHERNET {
                    return Err(CaptureError::LinkType {
                        path: shown.to_owned(),
                        interface: 0,
                        linktype,
                    });
                }
                self.legacy_fcs = fcs;
                None
            }
            PcapBlockOwned::Legacy(b) => {
                let frac = if self.legacy_nanos {
                    b.ts_usec as u64
                } else {
                    b.ts_usec as u64 * 1_000
                };
                let caplen = (b.caplen as usize).min(b.data.len());
                // The FCS is the frame's last bytes: only a frame captured
                // whole has it.
                let keep = if caplen == b.origlen as usize {
                    caplen.saturating_sub(self.legacy_fcs)
                } else {
                    caplen
                };
                Some(Frame {
                    ts_ns: b.ts_sec as u64 * 1_000_000_000 + frac,
                    data: b.data[..keep].to_vec(),
                })
            }
            PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                self.interfaces.clear();
                None
            }
            PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                if idb.linktype.0 != LINKTYPE_ETHERNET {
                    return Err(CaptureError::LinkType {
                        path: shown.to_owned(),
                        interface: self.interfaces.len(),
                        linktype: idb.linktype.0,
                    });
                }
                self.interfaces.push(Interface {
                    linktype: idb.linktype.0,
                    resolution: idb.ts_resolution().unwrap_or(1_000_000),
                    offset_s: idb.ts_offset(),
                });
                None
            }
            PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                let Some(ifc) = self.interfaces.get(epb.if_id as usize) else {
                    return Err(CaptureError::NoInterface {
                        path: shown.to_owned(),
                        index: self.count + 1,
                        interface: epb.if_id,
                    });
                };
                debug_assert_eq!(ifc.linktype, LINKTYPE_ETHERNET);
                let ts = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                let secs = ts / ifc.resolution;
                let frac = ts % ifc.resolution;
                let ns = (secs as i64 + ifc.offset_s) as u64 * 1_000_000_000
                    + (frac as u128 * 1_000_000_000 / ifc.resolution as u128) as u64;
                let caplen = (epb.caplen as usize).min(epb.data.len());
                Some(Frame {
                    ts_ns: ns,
                    data: epb.data[..caplen].to_vec(),
                })
            }
            PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                let caplen = (spb.origlen as usize).min(spb.data.len());
                Some(Frame {
                    ts_ns: 0,
                    data: spb.data[..caplen].to_vec(),
                })
            }
            PcapBlockOwned::NG(_) => None,
        })
    }
}

/// Calls `each` for every frame of the capture at `path`, in file order.
pub fn read(path: &Path, each: impl FnMut(Frame) -> anyhow::Result<()>) -> anyhow::Result<usize> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| CaptureError::Open {
        path: shown.clone(),
        source,
    })?;
    read_from(&shown, file, each)
}

/// `read` from any reader, named `shown` in errors (the capture fuzz
/// target feeds it bytes).
pub fn read_from(
    shown: &str,
    input: impl Read + Send,
    mut each: impl FnMut(Frame) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let shown = shown.to_owned();
    let bad = |detail: String| CaptureError::Format {
        path: shown.clone(),
        detail,
    };
    let mut reader =
        pcap_parser::create_reader(1 << 20, input).map_err(|e| bad(format!("{e:?}")))?;
    let mut ctx = Context::default();
    // Refills in a row without a block: a file cut mid-record never stops
    // being "incomplete", so give up after a few.
    let mut stalls = 0;
    loop {
        match reader.next() {
            Ok((offset, block)) => {
                stalls = 0;
                let frame = ctx.frame(&shown, block)?;
                reader.consume(offset);
                if let Some(f) = frame {
                    ctx.count += 1;
                    each(f)?;
                }
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                stalls += 1;
                if stalls > 4 {
                    let count = ctx.count;
                    return Err(bad(format!(
                        "the last record (after {count} packets) is cut short"
                    ))
                    .into());
                }
                if let Err(e) = reader.refill() {
                    return Err(bad(format!("truncated file: {e:?}")).into());
                }
            }
            Err(e) => return Err(bad(format!("{e:?}")).into()),
        }
    }
    Ok(ctx.count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A legacy pcap with link-type field `field` and one frame `frame`.
    fn pcap(field: u32, frame: &[u8]) -> std::path::PathBuf {
        let mut b = Vec::new();
        b.extend(0xa1b2_c3d4u32.to_le_bytes());
        b.extend(2u16.to_le_bytes());
        b.extend(4u16.to_le_bytes());
        b.extend([0u8; 8]);
        b.extend(65_535u32.to_le_bytes());
        b.extend(field.to_le_bytes());
        for w in [1u32, 0, frame.len() as u32, frame.len() as u32] {
            b.extend(w.to_le_bytes());
        }
        b.extend(frame);
        let path =
            std::env::temp_dir().join(format!("tg-capture-{field:x}-{}.pcap", std::process::id()));
        std::fs::write(&path, b).unwrap();
        path
    }

    fn frames(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        read(path, |f| {
            out.push(f.data);
            Ok(())
        })?;
        std::fs::remove_file(path).ok();
        Ok(out)
    }

    #[test]
    fn link_type_bits_above_the_low_16_are_read_as_tshark_reads_them() {
        let frame: Vec<u8> = (0..64u8).collect();
        // Reserved and FCS-length bits, no FCS flag: Ethernet, frame whole.
        assert_eq!(
            frames(&pcap(0x3000_0001, &frame)).unwrap(),
            vec![frame.clone()]
        );
        // The FCS flag with a length of two 16-bit words: 4 bytes cut.
        assert_eq!(
            frames(&pcap(0x2400_0001, &frame)).unwrap(),
            vec![frame[..60].to_vec()]
        );
        // Not Ethernet in the low 16 bits: refused, naming the link type.
        let e = frames(&pcap(0x3000_0071, &frame)).unwrap_err().to_string();
        assert!(e.contains("link type 113"), "{e}");
    }
}
