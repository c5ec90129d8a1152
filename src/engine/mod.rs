//! Async orchestration: fetch everything with bounded concurrency and per-API limits, apply a
//! sync plan (journalled, audited), and the benchmarks of both.

pub mod apply;
pub mod bench;
pub mod bench_sync;
pub mod fetch;
pub mod journal;
pub mod pipeline;
