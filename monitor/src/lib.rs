//! Tollgate's user-space side: loading the XDP programs, owning their
//! maps, and the tools built on them (replay).
pub mod loader;
