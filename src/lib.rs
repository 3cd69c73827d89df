//! metalab: a host-side runner for a bare-metal VM test lab.

pub mod metal;
