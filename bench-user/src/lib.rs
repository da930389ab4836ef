//! protoprof's runner as a library: one module per pipeline stage, in the
//! order data flows through them (see docs/architecture.md).
//!
//! spec → chain → drive → capture → resolve → fold → analyze → render;
//! `report` is the contract between analyze and every output, and `run`
//! strings the stages together for one profile.

pub mod analyze;
pub mod baseline;
pub mod calibrate;
pub mod capture;
pub mod chain;
pub mod compare;
pub mod drive;
pub mod fold;
pub mod live;
pub mod machine;
pub mod order_statistics;
pub mod peers;
pub mod render;
pub mod report;
pub mod resolve;
pub mod run;
pub mod spec;
pub mod units;
