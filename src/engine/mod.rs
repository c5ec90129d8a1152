//! Async orchestration: fetch everything with bounded concurrency and per-API limits (and,
//! with later issues, apply a sync plan and write the audit log).

pub mod bench;
pub mod fetch;
