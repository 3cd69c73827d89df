//! The VM layer: what metalab does to a lab's VMs, below the run engine and above Vagrant and
//! libvirt. A [`Driver`] brings a lab's machines up, provisions them, says how to reach them,
//! snapshots and reverts them, reports on them from the host, and destroys everything the lab
//! made ([`vagrant_libvirt`] is the one implementation). A [`guest::Vm`] is one machine once
//! connected over SSH: its session, its lab address, its reconnection after a revert, and the
//! diagnostics it can still give from inside.

pub mod access;
pub mod driver;
pub mod guest;
pub mod vagrant_libvirt;

pub use driver::{Destroyed, Driver};
pub use guest::Vm;
pub use vagrant_libvirt::VagrantLibvirt;
