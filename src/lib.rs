//! metalab: a host-side runner for a bare-metal VM test lab.
//!
//! Layers, top to bottom (dependencies point down only):
//! - [`cli`]: the commands, and [`shard`]: which suites a shard of a CI pipeline runs;
//! - [`run`]: the lifecycle engine, which emits [`run::event`]s;
//! - [`report`]: reporters consuming those events;
//! - [`provider`], [`vagrant`], [`libvirt`], [`boxes`], [`lab`], [`suite`]: what the engine drives;
//! - [`transport`]: where commands run (local process, SSH);
//! - [`config`], [`state`], [`ids`], [`exit`], [`retry`], [`child_env`], [`budget`]: the ground
//!   everything stands on ([`retry`]: how metalab waits and tries again; [`child_env`]: the
//!   environment of every process metalab starts; [`budget`]: how many bytes of the VMs' output a
//!   run keeps).

// Errors that point into files carry the offending line with them; they are built once, on the
// way out, so their size does not matter.
#![allow(clippy::result_large_err)]
// Every process metalab starts is made by `child_env`, which keeps secrets out of its
// environment; `clippy.toml` names the constructors that would bypass it. Only the library is
// held to it (Cargo.toml allows it elsewhere): the tests start their own tools.
#![warn(clippy::disallowed_methods)]

pub mod boxes;
pub mod budget;
pub mod child_env;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod ec2;
pub mod exit;
pub mod files;
pub mod gate;
pub mod history;
pub mod host;
pub mod ids;
pub mod images;
pub mod journal;
pub mod junit;
pub mod lab;
pub mod libvirt;
pub mod metal;
pub mod model;
pub mod mux;
pub mod paths;
pub mod provider;
pub mod reap;
pub mod report;
pub mod retry;
pub mod run;
pub mod shard;
pub mod signal;
pub mod state;
pub mod stats;
pub mod suite;
pub mod transport;
pub mod untrusted;
pub mod vagrant;
pub mod vm;
