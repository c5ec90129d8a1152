//! One module per external API: typed serde models and a client. Every client takes its base
//! URL from [`crate::config::Endpoints`] and sends through [`http::HttpCore`].

pub mod autotask;
pub mod connectwise;
pub mod dickerdata;
pub mod error;
pub mod graph;
pub mod http;
pub mod limit;
pub mod partnercenter;
pub mod xero;

#[cfg(test)]
pub mod json_strategy;

pub use error::{Api, ApiError, ErrorKind};
