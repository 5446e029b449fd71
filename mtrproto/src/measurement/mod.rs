//! The measurement layer: mtr's per-hop statistics, one target's trace on top of a session's
//! results, and mtr's report formats.

pub(crate) mod mda;
pub(crate) mod multipath;
pub(crate) mod report;
pub(crate) mod stats;
pub(crate) mod tracer;
