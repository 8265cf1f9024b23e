//! Reading pcap and pcapng captures (pcap-parser), Ethernet link type only.

use std::{fs::File, path::Path};

use pcap_parser::{Block, PcapBlockOwned, PcapError};

/// Ethernet, the only link layer XDP sees on the interfaces we attach to.
const LINKTYPE_ETHERNET: i32 = 1;

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
                if h.network.0 != LINKTYPE_ETHERNET {
                    return Err(CaptureError::LinkType {
                        path: shown.to_owned(),
                        interface: 0,
                        linktype: h.network.0,
                    });
                }
                None
            }
            PcapBlockOwned::Legacy(b) => {
                let frac = if self.legacy_nanos {
                    b.ts_usec as u64
                } else {
                    b.ts_usec as u64 * 1_000
                };
                Some(Frame {
                    ts_ns: b.ts_sec as u64 * 1_000_000_000 + frac,
                    data: b.data.to_vec(),
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
pub fn read(
    path: &Path,
    mut each: impl FnMut(Frame) -> anyhow::Result<()>,
) -> anyhow::Result<usize> {
    let shown = path.display().to_string();
    let bad = |detail: String| CaptureError::Format {
        path: shown.clone(),
        detail,
    };
    let file = File::open(path).map_err(|source| CaptureError::Open {
        path: shown.clone(),
        source,
    })?;
    let mut reader =
        pcap_parser::create_reader(1 << 20, file).map_err(|e| bad(format!("{e:?}")))?;
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
