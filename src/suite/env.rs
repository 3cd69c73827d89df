//! What of the runner's environment reaches the suites: its `LAB_*` variables, knobs for a run
//! (e.g. the throughput cut the benchmark calibration applies), set where metalab is started.
//! Never a secret: a suite is no more trusted with one than the lab's other processes are.

/// The runner's `LAB_*` variables for the suites: every one of them, or, for an untrusted run,
/// only those named in `only` (the trusted config's `[untrusted] lab_env`).
pub fn lab_variables(only: Option<&[String]>) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("LAB_") && !crate::child_env::is_secret(k))
        .filter(|(k, _)| only.is_none_or(|names| names.contains(k)))
        .collect();
    vars.sort();
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_lab_variable_but_a_secret_or_only_the_listed_ones() {
        // Set once for the test process; the names are this test's own.
        unsafe {
            std::env::set_var("LAB_ENV_TEST_A", "1");
            std::env::set_var("LAB_ENV_TEST_B", "2");
            std::env::set_var("NOT_LAB_ENV_TEST", "3");
            std::env::set_var("LAB_ENV_TEST_TOKEN", "4");
        }
        let mine = |vars: Vec<(String, String)>| -> Vec<String> {
            vars.into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .filter(|kv| kv.contains("ENV_TEST"))
                .collect()
        };
        assert_eq!(
            mine(lab_variables(None)),
            ["LAB_ENV_TEST_A=1", "LAB_ENV_TEST_B=2"]
        );
        let listed = ["LAB_ENV_TEST_B".to_string()];
        assert_eq!(mine(lab_variables(Some(&listed))), ["LAB_ENV_TEST_B=2"]);
    }
}
