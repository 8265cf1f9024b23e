//! Everything the XDP program and the daemon must agree on: the `#[repr(C)]`
//! map types, the map names and sizes, the drop reasons, and the pure logic
//! (token-bucket math, address masking) that both sides run. No allocation,
//! no floats, no `std`, so the same code is compiled into the kernel program
//! and tested on the host.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod bucket;
pub mod detect;
pub mod drops;
pub mod generator;
pub mod maps;
pub mod prefix;
pub mod reason;
pub mod seen;
pub mod syncookie;
pub mod thresholds;
pub mod tries;
pub mod types;
pub mod verified;

#[cfg(feature = "user")]
mod pod {
    //! The daemon reads and writes these types through aya maps; they are
    //! plain old data (no padding, no pointers), which the size assertions in
    //! `types` keep true.
    use crate::{bucket::BucketParams, types::*};
    unsafe impl aya::Pod for SourceKey {}
    unsafe impl aya::Pod for SourceState {}
    unsafe impl aya::Pod for SourceFlow {}
    unsafe impl aya::Pod for SourceControl {}
    unsafe impl aya::Pod for SlotClock {}
    unsafe impl aya::Pod for RuleParams {}
    unsafe impl aya::Pod for BucketParams {}
    unsafe impl aya::Pod for RuntimeConfig {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for PacketInfo {}
    unsafe impl aya::Pod for ReplayRecord {}
    unsafe impl aya::Pod for crate::generator::GenConfig {}
    unsafe impl aya::Pod for crate::generator::GenFrame {}
    unsafe impl aya::Pod for crate::verified::VerifiedKey {}
    unsafe impl aya::Pod for crate::drops::DropEntry {}
    unsafe impl aya::Pod for crate::prefix::PrefixSlot {}
}
