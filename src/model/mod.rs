//! The run's data, at the bottom of everything: the events the engine emits ([`event`]) and the
//! record they fold into ([`record`]), which the reporters, the history, the gate and the shard
//! planner read. It depends on nothing of metalab's but ids, exit codes and statistics.

pub mod event;
pub mod record;
