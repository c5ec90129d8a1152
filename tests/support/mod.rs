//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cli;
pub mod pty;
pub mod sim;
pub mod walk;
