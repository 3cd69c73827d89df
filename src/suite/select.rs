//! Which suites, tests and benchmarks a run is asked for: `metalab run policy` (a whole suite),
//! `metalab run policy/denied-port-dropped` (one test of it, with the suite's setup and
//! teardown), any mix of both.

use super::Suite;

/// The suites `patterns` name (`SUITE` or `SUITE/NAME`), each cut down to the tests and
/// benchmarks named when only some are, in the suites directory's order; every suite when no
/// pattern is given. A pattern that names nothing, or names the same thing twice, is an error.
pub fn select(all: &[Suite], patterns: &[String]) -> Result<Vec<Suite>, String> {
    if patterns.is_empty() {
        return Ok(all.to_vec());
    }
    let mut whole: Vec<&str> = Vec::new();
    let mut parts: Vec<(&str, &str)> = Vec::new();
    for p in patterns {
        let (suite, entry) = match p.split_once('/') {
            Some((s, e)) => (s, Some(e)),
            None => (p.as_str(), None),
        };
        let Some(found) = all.iter().find(|s| s.name == suite) else {
            let known: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "no suite named `{suite}` (known: {})",
                known.join(", ")
            ));
        };
        match entry {
            None if whole.contains(&suite) => {
                return Err(format!("suite `{suite}` is named twice"));
            }
            None => whole.push(suite),
            Some(e) if parts.contains(&(suite, e)) => {
                return Err(format!("`{suite}/{e}` is named twice"));
            }
            Some(e) if !has_entry(found, e) => {
                return Err(format!(
                    "suite `{suite}` has no test or benchmark `{e}` (it has: {})",
                    entries(found).join(", ")
                ));
            }
            Some(e) => parts.push((suite, e)),
        }
    }
    Ok(all
        .iter()
        .filter_map(|s| {
            if whole.contains(&s.name.as_str()) {
                return Some(s.clone());
            }
            let wanted: Vec<&str> = parts
                .iter()
                .filter(|(suite, _)| *suite == s.name)
                .map(|(_, e)| *e)
                .collect();
            (!wanted.is_empty()).then(|| only(s, &wanted))
        })
        .collect())
}

fn has_entry(s: &Suite, name: &str) -> bool {
    entries(s).contains(&name)
}

fn entries(s: &Suite) -> Vec<&str> {
    s.tests
        .iter()
        .map(|t| t.name.as_str())
        .chain(s.benchmarks.iter().map(|b| b.name.as_str()))
        .collect()
}

/// The suite with only the named tests and benchmarks (its setup, teardown and artifacts stay).
fn only(s: &Suite, names: &[&str]) -> Suite {
    let mut cut = s.clone();
    cut.tests.retain(|t| names.contains(&t.name.as_str()));
    cut.benchmarks.retain(|b| names.contains(&b.name.as_str()));
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suites() -> Vec<Suite> {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in [
            (
                "policy",
                "[[test]]\nname = \"allowed\"\nrun = \"true\"\n[[test]]\nname = \"denied\"\nrun = \"true\"\n",
            ),
            (
                "throughput",
                "[[benchmark]]\nname = \"tcp\"\nrun = \"true\"\n[[benchmark.metric]]\nname = \"x\"\nunit = \"s\"\ndirection = \"lower\"\nregex = '(\\d+)'\n",
            ),
        ] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
            std::fs::write(
                dir.path().join(name).join("suite.toml"),
                format!("vms = [\"node1\"]\n{body}"),
            )
            .unwrap();
        }
        let known = super::super::Known {
            vms: &["node1".to_string()],
            images: &[],
        };
        super::super::load_all(dir.path(), &known).unwrap()
    }

    fn pick(patterns: &[&str]) -> Result<Vec<(String, Vec<String>)>, String> {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Ok(select(&suites(), &patterns)?
            .into_iter()
            .map(|s| {
                (
                    s.name.clone(),
                    entries(&s).iter().map(|e| e.to_string()).collect(),
                )
            })
            .collect())
    }

    #[test]
    fn suites_and_single_tests_are_picked_in_the_directory_order() {
        assert_eq!(pick(&[]).unwrap().len(), 2);
        assert_eq!(
            pick(&["throughput", "policy/denied"]).unwrap(),
            vec![
                ("policy".to_string(), vec!["denied".to_string()]),
                ("throughput".to_string(), vec!["tcp".to_string()]),
            ]
        );
        // A whole suite named beside one of its tests runs whole.
        assert_eq!(pick(&["policy/denied", "policy"]).unwrap()[0].1.len(), 2);
    }

    #[test]
    fn what_names_nothing_or_twice_is_refused() {
        assert!(
            pick(&["polcy"])
                .unwrap_err()
                .contains("no suite named `polcy`")
        );
        assert!(
            pick(&["policy/nope"])
                .unwrap_err()
                .contains("has no test or benchmark `nope` (it has: allowed, denied)")
        );
        assert_eq!(
            pick(&["policy", "policy"]).unwrap_err(),
            "suite `policy` is named twice"
        );
        assert!(pick(&["policy/denied", "policy/denied"]).is_err());
    }
}
