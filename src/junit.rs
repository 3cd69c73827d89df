//! JUnit XML as the strictest of its readers accepts it: the `junit-10.xsd` schema that Jenkins'
//! xUnit plugin validates against (Jenkins' own `junit` step is more lenient). quick-junit writes
//! a few attributes that schema does not know, so they are left out here:
//! - `skipped` and `timestamp` on the root `<testsuites>` (the schema allows them on each
//!   `<testsuite>` only, where they stay);
//! - `time` on reruns (`flakyFailure`, `rerunError`, ...), whose `type` the schema requires, so
//!   callers set one (see [`rerun`]).

use quick_junit::{NonSuccessKind, Report, TestRerun};

/// The report as XML the schema accepts.
pub fn to_xml(report: &Report) -> Result<String, quick_junit::SerializeError> {
    let xml = report.to_string()?;
    Ok(strip_root_attributes(&xml, &["skipped", "timestamp"]))
}

/// A failed earlier attempt of a case, with the `type` the schema requires.
pub fn rerun(kind: NonSuccessKind, ty: &str, message: String) -> TestRerun {
    let mut r = TestRerun::new(kind);
    r.set_type(ty.to_string()).set_message(message);
    r
}

/// Removes the named attributes from the `<testsuites ...>` start tag only.
fn strip_root_attributes(xml: &str, names: &[&str]) -> String {
    let Some(start) = xml.find("<testsuites") else {
        return xml.to_string();
    };
    let Some(len) = xml[start..].find('>') else {
        return xml.to_string();
    };
    let mut tag = xml[start..start + len].to_string();
    for name in names {
        let key = format!(" {name}=\"");
        if let Some(at) = tag.find(&key)
            && let Some(end) = tag[at + key.len()..].find('"')
        {
            tag.replace_range(at..at + key.len() + end + 1, "");
        }
    }
    format!("{}{tag}{}", &xml[..start], &xml[start + len..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_loses_what_the_schema_does_not_know_and_suites_keep_it() {
        let xml = "<?xml version=\"1.0\"?>\n<testsuites name=\"r\" tests=\"1\" skipped=\"0\" failures=\"0\" errors=\"0\" timestamp=\"2026-11-25T23:05:44.110+00:00\" time=\"1.0\">\n<testsuite name=\"s\" skipped=\"0\" timestamp=\"x\">";
        let strict = strip_root_attributes(xml, &["skipped", "timestamp"]);
        assert!(
            strict.contains(
                "<testsuites name=\"r\" tests=\"1\" failures=\"0\" errors=\"0\" time=\"1.0\">"
            ),
            "{strict}"
        );
        assert!(strict.contains("<testsuite name=\"s\" skipped=\"0\" timestamp=\"x\">"));
    }
}
