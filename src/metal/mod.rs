//! The Packet / Equinix Metal API v1: a client for the `metal` provider, and a local server
//! that implements the same contract so the provider can be tested after the platform's
//! shutdown (30 June 2026).
//!
//! The contract is written down in `shared/reference/metal-api.md`.

pub mod api;
mod client;
mod error;
mod lifecycle;
mod retry;
pub mod server;
mod token;

/// The Metal client's names for metalab's waiting policies ([`crate::retry`]): how API
/// requests are retried, and how a device is polled.
pub use crate::retry::{Backoff as RetryPolicy, Poll as PollPolicy};
pub use api::{Device, DeviceCreateInput, DeviceState};
pub use client::{ClientConfig, DEFAULT_BASE_URL, MetalClient};
pub use error::MetalError;
pub use token::ApiToken;
