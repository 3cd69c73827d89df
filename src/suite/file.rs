//! Parsing and validating `suite.toml` files.

use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde_spanned::Spanned;

use super::{
    Artifact, Benchmark, Direction, Expect, MANIFEST, Metric, MetricSource, MetricSpec, Step,
    Suite, SuiteError, Test,
};
use crate::config::located::{LocatedError, ReadError, SourceFile, refuse};
use crate::config::values::positive_duration_opt;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    description: Option<String>,
    vms: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    setup: Vec<RawStep>,
    #[serde(default, rename = "test")]
    tests: Vec<RawTest>,
    #[serde(default, rename = "benchmark")]
    benchmarks: Vec<RawBenchmark>,
    #[serde(default)]
    teardown: Vec<RawStep>,
    #[serde(default, rename = "artifact")]
    artifacts: Vec<RawArtifact>,
    #[serde(default = "yes")]
    pristine: bool,
    #[serde(default)]
    images: Vec<Spanned<String>>,
    #[serde(default)]
    side_by_side: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    vm: Option<Spanned<String>>,
    run: Spanned<String>,
    #[serde(default, deserialize_with = "positive_duration_opt")]
    timeout: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    name: Spanned<String>,
    vm: Option<Spanned<String>>,
    run: Spanned<String>,
    #[serde(default, deserialize_with = "positive_duration_opt")]
    timeout: Option<Duration>,
    #[serde(default)]
    expect: RawExpect,
    #[serde(default)]
    retries: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    #[serde(default, deserialize_with = "exit_code")]
    exit: Option<i32>,
    output: Option<Spanned<String>>,
    no_output: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBenchmark {
    name: Spanned<String>,
    vm: Option<Spanned<String>>,
    run: Spanned<String>,
    #[serde(default, deserialize_with = "positive_duration_opt")]
    timeout: Option<Duration>,
    #[serde(default = "default_warmup")]
    warmup: u32,
    #[serde(default = "default_repeats", deserialize_with = "some_repeats")]
    repeats: u32,
    #[serde(rename = "metric")]
    metrics: Spanned<Vec<RawMetric>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: String,
    unit: String,
    direction: Direction,
    regex: Option<Spanned<String>>,
    json: Option<Spanned<String>>,
    #[serde(default = "default_scale")]
    scale: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArtifact {
    vm: Option<Spanned<String>>,
    path: Spanned<String>,
}

fn default_warmup() -> u32 {
    1
}
fn default_repeats() -> u32 {
    5
}
fn default_scale() -> f64 {
    1.0
}

/// An exit status a process can have: 0 to 255.
fn exit_code<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    let code = i64::deserialize(d)?;
    match u8::try_from(code) {
        Ok(code) => Ok(Some(code.into())),
        Err(_) => Err(refuse(
            format!("{code} is not an exit status: they are 0 to 255"),
            "a command killed by signal N exits with 128 + N in a shell",
        )),
    }
}

/// A benchmark with no repeat would measure nothing.
fn some_repeats<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match u32::deserialize(d)? {
        0 => Err(refuse(
            "0 is below the minimum of 1",
            "a benchmark needs at least one repeat: its samples are the repeats' numbers",
        )),
        n => Ok(n),
    }
}

/// Suite names become file names and shell words, as test names do.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

/// Loads every suite under `dir` (each subdirectory holding a `suite.toml`), sorted by name,
/// checking each VM it names against `known.vms`, the VMs the Vagrantfile defines, and each
/// image against `known.images`, the lab's image recipes.
pub fn load_all(dir: &Path, known: &Known) -> Result<Vec<Suite>, SuiteError> {
    let entries = std::fs::read_dir(dir).map_err(|e| SuiteError::read(dir, e))?;
    let mut suites = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| SuiteError::read(dir, e))?;
        let manifest = entry.path().join(MANIFEST);
        if manifest.is_file() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !valid_name(&name) {
                return Err(SuiteError::BadName {
                    dir: entry.path(),
                    name,
                });
            }
            suites.push(load_one(&manifest, known)?);
        }
    }
    if suites.is_empty() {
        return Err(SuiteError::Empty(dir.to_path_buf()));
    }
    suites.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(suites)
}

/// What a suite file may name.
pub struct Known<'a> {
    /// The VMs the Vagrantfile defines.
    pub vms: &'a [String],
    /// The images the lab has recipes for ([`crate::images::available`]).
    pub images: &'a [String],
}

fn load_one(manifest: &Path, known: &Known) -> Result<Suite, SuiteError> {
    let file = SourceFile::read(manifest).map_err(|e| match e {
        ReadError::Io(e) => SuiteError::read(manifest, e),
        ReadError::Located(e) => SuiteError::Located(e),
    })?;
    let raw: RawSuite = toml::from_str(&file.text).map_err(|e| file.toml_error(&e))?;
    let dir = manifest.parent().unwrap_or(Path::new(".")).to_path_buf();
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let v = Validator::new(&file, &raw.vms, known.vms)?;
    if raw.tests.is_empty() && raw.benchmarks.is_empty() {
        return Err(file
            .error_at_start("a suite needs at least one [[test]] or [[benchmark]]")
            .with_hint("add a [[test]] with a `name` and the command it runs (`run`)")
            .into());
    }
    v.names(&raw.tests, &raw.benchmarks)?;
    Ok(Suite {
        name,
        description: raw.description,
        dir,
        vms: raw
            .vms
            .get_ref()
            .iter()
            .map(|s| s.get_ref().clone())
            .collect(),
        setup: v.steps(raw.setup)?,
        tests: v.tests(raw.tests)?,
        benchmarks: v.benchmarks(raw.benchmarks)?,
        teardown: v.steps(raw.teardown)?,
        artifacts: v.artifacts(raw.artifacts)?,
        pristine: raw.pristine,
        images: images(&file, raw.images, known.images)?,
        side_by_side: raw.side_by_side,
    })
}

/// The images a suite names, each one the lab has a recipe for, none twice.
fn images(
    file: &SourceFile,
    named: Vec<Spanned<String>>,
    known: &[String],
) -> Result<Vec<String>, LocatedError> {
    let mut images: Vec<String> = Vec::new();
    for image in named {
        let name = image.get_ref();
        if !known.contains(name) {
            let offered = match known.is_empty() {
                true => "the lab has no image recipes (directories with a build.sh under                          `lab.images`)"
                    .to_string(),
                false => format!("the lab's image recipes: {}", known.join(", ")),
            };
            return Err(file
                .error_at(image.span(), format!("unknown image `{name}`"))
                .with_key("images")
                .with_hint(offered));
        }
        if images.contains(name) {
            return Err(file
                .error_at(image.span(), format!("image `{name}` is named twice"))
                .with_key("images"));
        }
        images.push(image.into_inner());
    }
    Ok(images)
}

/// Checks names and regexes against one suite file, so errors point into it.
struct Validator<'a> {
    file: &'a SourceFile,
    vms: Vec<String>,
}

impl<'a> Validator<'a> {
    fn new(
        file: &'a SourceFile,
        vms: &Spanned<Vec<Spanned<String>>>,
        known: &[String],
    ) -> Result<Self, LocatedError> {
        if vms.get_ref().is_empty() {
            return Err(file
                .error_at(vms.span(), "a suite needs at least one VM")
                .with_hint(format!("the Vagrantfile defines: {}", known.join(", "))));
        }
        for vm in vms.get_ref() {
            if !known.contains(vm.get_ref()) {
                return Err(file
                    .error_at(vm.span(), format!("unknown VM `{}`", vm.get_ref()))
                    .with_key("vms")
                    .with_hint(format!("the Vagrantfile defines: {}", known.join(", "))));
            }
        }
        Ok(Validator {
            file,
            vms: vms.get_ref().iter().map(|s| s.get_ref().clone()).collect(),
        })
    }

    /// A step's VM must be one of the suite's `vms`; it defaults to the first of them.
    fn vm(&self, vm: Option<Spanned<String>>) -> Result<String, LocatedError> {
        let Some(vm) = vm else {
            return Ok(self.vms[0].clone());
        };
        if self.vms.contains(vm.get_ref()) {
            return Ok(vm.into_inner());
        }
        Err(self
            .file
            .error_at(
                vm.span(),
                format!("VM `{}` is not among this suite's `vms`", vm.get_ref()),
            )
            .with_hint(format!("add it to `vms` (now: {})", self.vms.join(", "))))
    }

    fn step(
        &self,
        vm: Option<Spanned<String>>,
        run: Spanned<String>,
        timeout: Option<Duration>,
    ) -> Result<Step, LocatedError> {
        if run.get_ref().trim().is_empty() {
            return Err(self
                .file
                .error_at(
                    run.span(),
                    "`run` is empty: it is the command to run in the VM",
                )
                .with_hint("e.g. run = \"./check-routes.sh\" (run from the suite's directory)"));
        }
        Ok(Step {
            vm: self.vm(vm)?,
            run: run.into_inner(),
            timeout,
        })
    }

    fn steps(&self, raw: Vec<RawStep>) -> Result<Vec<Step>, LocatedError> {
        raw.into_iter()
            .map(|s| self.step(s.vm, s.run, s.timeout))
            .collect()
    }

    fn regex(&self, value: Option<Spanned<String>>) -> Result<Option<Regex>, LocatedError> {
        value
            .map(|v| {
                Regex::new(v.get_ref()).map_err(|e| {
                    self.file.error_at(
                        v.span(),
                        format!("invalid regex: {}", first_line(&e.to_string())),
                    )
                })
            })
            .transpose()
    }

    /// The 1-based line where a value starts.
    fn line_of<T>(&self, value: &Spanned<T>) -> usize {
        let start = value.span().start.min(self.file.text.len());
        self.file.text[..start].matches('\n').count() + 1
    }

    /// The names of the tests and benchmarks, in the file's order: each valid, and none taken
    /// twice (their logs are named after them).
    fn names(&self, tests: &[RawTest], benchmarks: &[RawBenchmark]) -> Result<(), LocatedError> {
        let mut all: Vec<(&Spanned<String>, &str)> = tests
            .iter()
            .map(|t| (&t.name, "test"))
            .chain(benchmarks.iter().map(|b| (&b.name, "benchmark")))
            .collect();
        all.sort_by_key(|(name, _)| name.span().start);
        let mut seen: Vec<(&str, &str, usize)> = Vec::new();
        for (name, what) in all {
            let n = name.get_ref();
            if !valid_name(n) {
                return Err(self
                    .file
                    .error_at(name.span(), format!("`{n}` is not a valid name"))
                    .with_hint("use letters, digits, '-', '_' and '.': names become file names"));
            }
            if let Some((_, other, line)) = seen.iter().find(|(taken, _, _)| taken == n) {
                return Err(self
                    .file
                    .error_at(
                        name.span(),
                        format!("duplicate name `{n}`: the {other} on line {line} has it too"),
                    )
                    .with_hint(
                        "give each test and benchmark of a suite a name of its own: \
                         their logs are named after them",
                    ));
            }
            seen.push((n, what, self.line_of(name)));
        }
        Ok(())
    }

    fn tests(&self, raw: Vec<RawTest>) -> Result<Vec<Test>, LocatedError> {
        raw.into_iter()
            .map(|t| {
                Ok(Test {
                    line: self.line_of(&t.name),
                    name: t.name.get_ref().clone(),
                    step: self.step(t.vm, t.run, t.timeout)?,
                    expect: Expect {
                        exit: t.expect.exit.unwrap_or(0),
                        output: self.regex(t.expect.output)?,
                        no_output: self.regex(t.expect.no_output)?,
                    },
                    retries: t.retries,
                })
            })
            .collect()
    }

    fn benchmarks(&self, raw: Vec<RawBenchmark>) -> Result<Vec<Benchmark>, LocatedError> {
        raw.into_iter()
            .map(|b| {
                let span = b.metrics.span();
                if b.metrics.get_ref().is_empty() {
                    return Err(self
                        .file
                        .error_at(span, "a benchmark needs at least one metric and one repeat"));
                }
                Ok(Benchmark {
                    line: self.line_of(&b.name),
                    name: b.name.get_ref().clone(),
                    step: self.step(b.vm, b.run, b.timeout)?,
                    warmup: b.warmup,
                    repeats: b.repeats,
                    metrics: b
                        .metrics
                        .into_inner()
                        .into_iter()
                        .map(|m| self.metric(m, span.clone()))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect()
    }

    fn metric(&self, m: RawMetric, span: std::ops::Range<usize>) -> Result<Metric, LocatedError> {
        let source = match (m.regex, m.json) {
            (Some(re), None) => {
                let regex = self.regex(Some(re.clone()))?.expect("regex given");
                if regex.captures_len() < 2 {
                    return Err(self.file.error_at(
                        re.span(),
                        "the regex needs a capture group around the number",
                    ));
                }
                MetricSource::Regex(regex)
            }
            (None, Some(ptr)) if ptr.get_ref().starts_with('/') => {
                MetricSource::JsonPointer(ptr.into_inner())
            }
            (None, Some(ptr)) => {
                return Err(self
                    .file
                    .error_at(ptr.span(), "a JSON pointer starts with '/'")
                    .with_hint("e.g. json = \"/end/sum_received/bits_per_second\""));
            }
            _ => {
                return Err(self.file.error_at(
                    span,
                    format!("metric `{}` needs exactly one of `regex` or `json`", m.name),
                ));
            }
        };
        Ok(Metric {
            spec: MetricSpec {
                name: m.name,
                unit: m.unit,
                direction: m.direction,
            },
            source,
            scale: m.scale,
        })
    }

    fn artifacts(&self, raw: Vec<RawArtifact>) -> Result<Vec<Artifact>, LocatedError> {
        raw.into_iter()
            .map(|a| {
                if !a.path.get_ref().starts_with('/') {
                    return Err(self.file.error_at(
                        a.path.span(),
                        "an artifact path must be absolute inside the VM",
                    ));
                }
                Ok(Artifact {
                    vm: self.vm(a.vm)?,
                    path: a.path.into_inner(),
                })
            })
            .collect()
    }
}

fn first_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `toml` as the suite `name`, loaded against the VMs node1 and node2.
    fn load(name: &str, toml: &str) -> Result<Suite, SuiteError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(name)).unwrap();
        std::fs::write(dir.path().join(name).join(MANIFEST), toml).unwrap();
        let known = Known {
            vms: &["node1".into(), "node2".into()],
            images: &["netbox".into()],
        };
        load_all(dir.path(), &known).map(|mut s| s.remove(0))
    }

    fn rejected(toml: &str) -> LocatedError {
        match load("s", toml) {
            Err(SuiteError::Located(e)) => e,
            other => panic!("{:?}", other.map(|s| s.name)),
        }
    }

    const TEST: &str = "[[test]]\nname = \"t\"\nrun = \"true\"\n";

    #[test]
    fn images_are_checked_against_the_lab_s_recipes() {
        let s = load(
            "s",
            &format!("vms = [\"node1\"]\nimages = [\"netbox\"]\n{TEST}"),
        )
        .unwrap();
        assert_eq!(s.images, vec!["netbox"]);
        assert!(
            load("s", &format!("vms = [\"node1\"]\n{TEST}"))
                .unwrap()
                .images
                .is_empty()
        );
        let e = rejected(&format!("vms = [\"node1\"]\nimages = [\"alpine\"]\n{TEST}"));
        assert_eq!(
            (e.line, e.column, e.key.as_deref()),
            (2, 11, Some("images"))
        );
        assert_eq!(e.message, "unknown image `alpine`");
        assert_eq!(e.hint.as_deref(), Some("the lab's image recipes: netbox"));
        let e = rejected(&format!(
            "vms = [\"node1\"]\nimages = [\"netbox\", \"netbox\"]\n{TEST}"
        ));
        assert_eq!((e.line, e.column), (2, 21));
        assert!(e.message.contains("named twice"), "{}", e.message);
    }

    #[test]
    fn a_suite_with_nothing_to_run_is_refused() {
        let e = rejected("vms = [\"node1\"]\n[[setup]]\nrun = \"true\"\n");
        assert_eq!((e.line, e.column, e.key.as_deref()), (1, 1, None));
        assert_eq!(
            e.message,
            "a suite needs at least one [[test]] or [[benchmark]]"
        );
    }

    #[test]
    fn tests_and_benchmarks_share_their_names() {
        let e = rejected(&format!(
            "vms = [\"node1\"]\n{TEST}[[benchmark]]\nname = \"t\"\nrun = \"x\"\n[[benchmark.metric]]\nname = \"m\"\nunit = \"s\"\ndirection = \"lower\"\nregex = '(\\d+)'\n"
        ));
        assert_eq!((e.line, e.column), (6, 8));
        assert_eq!(
            e.message,
            "duplicate name `t`: the test on line 3 has it too"
        );
        // Located at the second in the file's order, whichever it is.
        let e = rejected(
            "vms = [\"node1\"]\n[[benchmark]]\nname = \"t\"\nrun = \"x\"\nmetric = [{ name = \"m\", unit = \"s\", direction = \"lower\", regex = '(\\d+)' }]\n[[test]]\nname = \"t\"\nrun = \"true\"\n",
        );
        assert_eq!((e.line, e.column), (7, 8));
        assert_eq!(
            e.message,
            "duplicate name `t`: the benchmark on line 3 has it too"
        );
    }

    #[test]
    fn values_that_would_run_nothing_are_located_at_the_value() {
        let cases = [
            ("[[test]]\nname = \"u\"\nrun = \" \"\n", (4, 7), "test.run"),
            (
                "[[test]]\nname = \"u\"\nrun = \"x\"\ntimeout = \"0s\"\n",
                (5, 11),
                "test.timeout",
            ),
            (
                "[[test]]\nname = \"u\"\nrun = \"x\"\nexpect = { exit = 256 }\n",
                (5, 19),
                "test.expect",
            ),
        ];
        for (bad, at, key) in cases {
            let e = rejected(&format!("vms = [\"node1\"]\n{bad}"));
            assert_eq!((e.line, e.column), at, "{e}");
            assert_eq!(e.key.as_deref(), Some(key));
        }
        assert_eq!(
            load(
                "s",
                "vms = [\"node1\"]\n[[test]]\nname = \"u\"\nrun = \"x\"\nexpect = { exit = 255 }\n"
            )
            .unwrap()
            .tests[0]
                .expect
                .exit,
            255
        );
    }

    #[test]
    fn a_suite_name_must_be_a_word() {
        match load("a;b", &format!("vms = [\"node1\"]\n{TEST}")) {
            Err(e @ SuiteError::BadName { .. }) => {
                assert!(
                    e.to_string().contains("`a;b` is not a valid suite name"),
                    "{e}"
                )
            }
            other => panic!("{:?}", other.map(|s| s.name)),
        }
        assert_eq!(
            load("a-b_c.1", &format!("vms = [\"node1\"]\n{TEST}"))
                .unwrap()
                .name,
            "a-b_c.1"
        );
    }
}
