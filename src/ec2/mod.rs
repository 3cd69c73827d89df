//! AWS EC2, where the `ec2` provider gets bare-metal instances: the SDK calls metalab makes
//! ([`client`]), what their errors mean ([`error`]), and what an instance is told at its first
//! boot ([`boot`]).

pub mod boot;
pub mod client;
pub mod error;

pub use client::{Ec2, Instance, Launch, Tagged};
pub use error::Ec2Error;

use crate::config::Ec2Config;

/// On everything metalab creates in EC2; its value is the lab's name.
pub const TAG: &str = "metalab";
/// The run that owns a resource.
pub const RUN_TAG: &str = "metalab:run";
/// When a resource is due to go (RFC 3339, UTC): reap removes it after that, whichever runner
/// made it.
pub const EXPIRES_TAG: &str = "metalab:expires";

/// The SDK's configuration from the standard AWS credential chain (the environment, a profile,
/// SSO, an instance role) for the configured region, profile and endpoint, with the SDK's
/// standard retries (throttling included) a few more times than its default.
pub async fn sdk_config(config: &Ec2Config) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(config.region.clone()))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(6));
    if let Some(profile) = &config.profile {
        loader = loader.profile_name(profile);
    }
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    loader.load().await
}
