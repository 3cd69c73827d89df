//! The sections of `metalab.toml`, one file each: the type, its defaults, its checks and their
//! tests.

pub mod bench;
pub mod capacity;
pub mod ec2;
pub mod history;
pub mod lab;
pub mod metal;
pub mod outputs;
pub mod provider;
pub mod retries;
pub mod ssh_hosts;
pub mod timeouts;
pub mod untrusted;
pub mod vm;

pub use bench::{Bench, DEFAULT_MIN_EFFECT};
pub use capacity::Capacity;
pub use ec2::{AddressKind, Ec2Config, Market, Placement};
pub use lab::DEFAULT_BOX_RECIPE;
pub use metal::MetalConfig;
pub use outputs::Outputs;
pub use provider::ProviderKind;
pub use retries::Retries;
pub use ssh_hosts::SshHostConfig;
pub use timeouts::Timeouts;
pub use untrusted::{Destination, Untrusted};
pub use vm::{Accel, VmDefaults};
