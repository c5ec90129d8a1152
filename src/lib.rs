//! cspsync: Microsoft CSP licences bought through Dicker Data, reconciled against Microsoft
//! and the PSA (ConnectWise Manage, Autotask or Xero), and synced — in a terminal.
//!
//! The crate is a library with a thin binary so tests reach everything (DESIGN.md §3).

pub mod access;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod connect;
pub mod demo;
pub mod doctor;
pub mod domain;
pub mod engine;
pub mod run;
pub mod secret;
pub mod sim;
pub mod tui;
