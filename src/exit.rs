//! Exit codes a pipeline can branch on. The table is documented in the README; keep them in sync.

use std::process::ExitCode;

/// How a metalab command ended, from best to worst for the purpose of merging outcomes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Everything passed.
    Passed,
    /// Every test passed, but a benchmark metric regressed against its baseline (the regression
    /// gate). Ranked below test failures: a failed test is the more urgent news, and a run whose
    /// tests failed says little about its numbers.
    Regressed,
    /// At least one test failed (or timed out).
    TestsFailed,
    /// The input was bad: config, suite file, command line. Nothing was started.
    BadInput,
    /// The lab itself failed: a VM did not come up, SSH failed, a host could not be prepared.
    InfraError,
    /// Interrupted by SIGINT (or SIGHUP), after cleanup.
    Interrupted,
    /// Terminated by SIGTERM (e.g. a Jenkins abort), after cleanup.
    Terminated,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Passed => 0,
            Status::TestsFailed => 1,
            Status::BadInput => 2,
            Status::InfraError => 3,
            Status::Regressed => 4,
            Status::Interrupted => 130,
            Status::Terminated => 143,
        }
    }

    /// The word a report gives the outcome: "PASSED", "INFRASTRUCTURE ERROR".
    pub fn word(self) -> &'static str {
        match self {
            Status::Passed => "PASSED",
            Status::Regressed => "REGRESSED",
            Status::TestsFailed => "FAILED",
            Status::BadInput => "BAD INPUT",
            Status::InfraError => "INFRASTRUCTURE ERROR",
            Status::Interrupted => "INTERRUPTED",
            Status::Terminated => "TERMINATED",
        }
    }

    /// The worse of two outcomes: interruptions beat infrastructure errors, which beat failures.
    pub fn worst(self, other: Status) -> Status {
        self.max(other)
    }
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        ExitCode::from(s.code())
    }
}
