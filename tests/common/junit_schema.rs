//! The rules of `junit-10.xsd`, the schema Jenkins' xUnit plugin validates JUnit files against
//! (jenkinsci/xunit-plugin, src/main/resources/org/jenkinsci/plugins/xunit/types/model/xsd):
//! which attributes each element may have and must have, which children it may hold, and the
//! form of a suite's `time`. Written down from the schema, so a test can hold metalab's files to
//! the strictest reader they meet.

/// (element, required attributes, allowed attributes besides, allowed children; `None`: text).
type Rule = (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
    Option<&'static [&'static str]>,
);

const NON_SUCCESS: &[&str] = &["type", "message"];
const RERUN_CHILDREN: &[&str] = &["stackTrace", "system-out", "system-err"];

const RULES: &[Rule] = &[
    (
        "testsuites",
        &[],
        &["name", "time", "tests", "failures", "errors"],
        Some(&["testsuite"]),
    ),
    (
        "testsuite",
        &["name", "tests", "failures", "errors"],
        &[
            "group",
            "time",
            "skipped",
            "timestamp",
            "hostname",
            "id",
            "package",
            "file",
            "log",
            "url",
            "version",
        ],
        Some(&[
            "testsuite",
            "properties",
            "testcase",
            "system-out",
            "system-err",
        ]),
    ),
    ("properties", &[], &[], Some(&["property"])),
    ("property", &["name", "value"], &[], Some(&[])),
    (
        "testcase",
        &["name"],
        &["time", "classname", "group"],
        Some(&[
            "skipped",
            "error",
            "failure",
            "rerunFailure",
            "rerunError",
            "flakyFailure",
            "flakyError",
            "system-out",
            "system-err",
        ]),
    ),
    ("failure", &[], NON_SUCCESS, None),
    ("error", &[], NON_SUCCESS, None),
    ("skipped", &[], NON_SUCCESS, None),
    (
        "rerunFailure",
        &["type"],
        &["message"],
        Some(RERUN_CHILDREN),
    ),
    ("rerunError", &["type"], &["message"], Some(RERUN_CHILDREN)),
    (
        "flakyFailure",
        &["type"],
        &["message"],
        Some(RERUN_CHILDREN),
    ),
    ("flakyError", &["type"], &["message"], Some(RERUN_CHILDREN)),
    ("stackTrace", &[], &[], None),
    ("system-out", &[], &[], None),
    ("system-err", &[], &[], None),
];

/// Every way `xml` breaks the schema; empty when it does not.
pub fn violations(xml: &str) -> Vec<String> {
    let doc = match roxmltree::Document::parse(xml) {
        Ok(d) => d,
        Err(e) => return vec![format!("not XML: {e}")],
    };
    let root = doc.root_element();
    let mut found = Vec::new();
    if !["testsuites", "testsuite"].contains(&root.tag_name().name()) {
        found.push(format!("root <{}>", root.tag_name().name()));
    }
    for node in root.descendants().filter(|n| n.is_element()) {
        check(node, &mut found);
    }
    found
}

fn check(node: roxmltree::Node, found: &mut Vec<String>) {
    let name = node.tag_name().name();
    let Some((_, required, allowed, children)) = RULES.iter().find(|r| r.0 == name) else {
        found.push(format!("<{name}> is not in the schema"));
        return;
    };
    for attr in node.attributes() {
        let a = attr.name();
        if !required.contains(&a) && !allowed.contains(&a) {
            found.push(format!("<{name}> has attribute `{a}`"));
        }
    }
    for r in *required {
        if node.attribute(*r).is_none() {
            found.push(format!("<{name}> lacks attribute `{r}`"));
        }
    }
    if let Some(time) = node.attribute("time")
        && ["testsuites", "testsuite"].contains(&name)
        && !surefire_time(time)
    {
        found.push(format!("<{name}> time=\"{time}\" is not a SUREFIRE_TIME"));
    }
    for child in node.children().filter(|c| c.is_element()) {
        let c = child.tag_name().name();
        match children {
            None => found.push(format!("<{name}> holds <{c}>, but only text")),
            Some(ok) if !ok.contains(&c) => found.push(format!("<{name}> holds <{c}>")),
            Some(_) => {}
        }
    }
}

/// `(([0-9]{0,3},)*[0-9]{3}|[0-9]{0,3})*(\.[0-9]{0,3})?`: digits (thousands may be separated by
/// commas), and at most three decimals.
fn surefire_time(t: &str) -> bool {
    let (whole, decimals) = t.split_once('.').unwrap_or((t, ""));
    whole.chars().all(|c| c.is_ascii_digit() || c == ',')
        && decimals.len() <= 3
        && decimals.chars().all(|c| c.is_ascii_digit())
}
