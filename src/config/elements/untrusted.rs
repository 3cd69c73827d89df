//! `[untrusted]`: what a run of an unreviewed change (`metalab run --untrusted`) may take from
//! the runner. Read only from the trusted lab definition in that mode, never from the change.

use serde::Deserialize;

use crate::config::located::refuse;

/// `[untrusted]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Untrusted {
    /// The runner's `LAB_*` variables that reach the suites of an untrusted run. Outside the
    /// mode every `LAB_*` variable does; in it, none unless listed here.
    #[serde(default, deserialize_with = "lab_variables")]
    pub lab_env: Vec<String>,
}

/// Names of `LAB_*` variables: anything else could hand a secret of the runner to the VMs.
fn lab_variables<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    match names.iter().find(|n| !is_lab_variable(n)) {
        Some(bad) => Err(refuse(
            format!("`{bad}` is not a LAB_* variable"),
            "only variables named LAB_<NAME> (capitals, digits, _) reach the suites",
        )),
        None => Ok(names),
    }
}

fn is_lab_variable(name: &str) -> bool {
    name.strip_prefix("LAB_").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{loaded, rejected};

    #[test]
    fn unset_lets_no_variable_through() {
        assert!(loaded("").untrusted.lab_env.is_empty());
        let c = loaded("[untrusted]\nlab_env = [\"LAB_MTU\", \"LAB_CUT_2\"]\n");
        assert_eq!(c.untrusted.lab_env, ["LAB_MTU", "LAB_CUT_2"]);
    }

    #[test]
    fn a_variable_that_is_not_lab_prefixed_is_located() {
        let e = rejected("[untrusted]\nlab_env = [\"LAB_MTU\", \"METAL_AUTH_TOKEN\"]\n");
        assert_eq!(e.line, 2);
        assert_eq!(e.key.as_deref(), Some("untrusted.lab_env"));
        assert_eq!(e.message, "`METAL_AUTH_TOKEN` is not a LAB_* variable");
    }
}
