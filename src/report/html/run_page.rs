//! The page of one run: status and numbers first, then failures, tests (with their logs),
//! benchmarks (with plots), the run's conditions and phases, and its artifacts.

use std::fmt::Write;
use std::path::Path;

use super::logs;
use super::page::{
    badge, esc, outcome_class, outcome_rank, outcome_word, slug, status_class, test_anchor,
    verdict_class,
};
use crate::gate::{self, GateReport, MetricVerdict, format_percent, format_value, verdict_word};
use crate::model::record::{BenchRecord, RunRecord, TestOutcome, TestRecord};
use crate::report::files::{JUNIT_XML, RESULTS_JSON};
use crate::report::summary::human;
use crate::stats::Verdict;

/// Everything the page shows.
pub struct RunPage<'a> {
    pub record: &'a RunRecord,
    /// The run's artifacts directory; the page lives in its `report/` subdirectory.
    pub run_dir: &'a Path,
    pub gate: &'a GateReport,
    /// Why the benchmarks could not be judged, when they could not.
    pub gate_note: Option<&'a str>,
    /// Relative paths (from the run directory) of every artifact, sorted.
    pub artifacts: &'a [(String, u64)],
}

/// The plots' file names (under `plots/`) of a metric.
pub fn plot_names(m: &MetricVerdict) -> (String, String) {
    let base = slug(&format!(
        "{}-{}-{}",
        m.key.suite, m.key.benchmark, m.key.metric
    ));
    (format!("{base}-samples.svg"), format!("{base}-history.svg"))
}

impl RunPage<'_> {
    pub fn body(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.header());
        out.push_str("<main class=\"wrap\">\n");
        out.push_str(&self.cards());
        out.push_str(&self.failures());
        out.push_str(&self.tests());
        out.push_str(&self.benchmarks());
        out.push_str(&self.details());
        out.push_str(&self.artifact_list());
        out.push_str("</main>\n");
        let files: Vec<String> = [RESULTS_JSON, JUNIT_XML, gate::junit::FILE]
            .into_iter()
            .filter(|f| self.run_dir.join(f).is_file())
            .map(|f| format!(" · <a href=\"../{f}\">{f}</a>"))
            .collect();
        let _ = write!(
            out,
            "<footer class=\"wrap\">metalab {}{}</footer>\n<script>{}</script>",
            esc(&self.record.metalab_version),
            files.concat(),
            OPEN_TARGET_JS
        );
        out
    }

    fn header(&self) -> String {
        let r = self.record;
        let mut meta = vec![
            format!("started {}", r.started.format("%Y-%m-%d %H:%M:%S UTC")),
            format!("took {}", human(r.duration)),
            format!("host {}", esc(&r.host)),
            format!("exit {}", r.status.code()),
        ];
        if let Some(commit) = r.conditions.as_ref().and_then(|c| c.lab_commit.as_ref()) {
            meta.push(format!("commit <code>{}</code>", esc(short(commit, 12))));
        }
        let regressed = self
            .gate
            .metrics
            .iter()
            .filter(|m| m.verdict == Verdict::Regressed)
            .count();
        let gate = if regressed > 0 {
            badge("bad", &format!("{regressed} benchmark metric(s) regressed"))
        } else {
            String::new()
        };
        format!(
            "<header class=\"top {cls}\"><div class=\"wrap\">\
             <p class=\"crumbs\"><a href=\"../../index.html\">← all runs</a></p>\
             <h1><span class=\"pill\">{word}</span> <span class=\"runid\">{id}</span> {gate}</h1>\
             <p class=\"meta\">{meta}</p></div></header>\n",
            cls = status_class(r.status),
            word = r.status.word(),
            id = esc(r.run_id.as_str()),
            meta = meta.join(" · "),
        )
    }

    fn cards(&self) -> String {
        let r = self.record;
        let failed = r
            .tests()
            .filter(|t| outcome_rank(t.outcome) == 0 && !never_ran(t))
            .count();
        let not_run = r
            .tests()
            .filter(|t| t.outcome == TestOutcome::Skipped || never_ran(t))
            .count();
        let metrics = self.gate.metrics.len();
        let regressed = self
            .gate
            .metrics
            .iter()
            .filter(|m| m.verdict == Verdict::Regressed)
            .count();
        let cards = [
            (r.count(TestOutcome::Passed), "passed", "good"),
            (failed, "failed", if failed > 0 { "bad" } else { "muted" }),
            (r.count(TestOutcome::Flaky), "flaky", "warn"),
            (not_run, "not run", "muted"),
            (metrics, "benchmark metrics", "neutral"),
            (
                regressed,
                "regressed",
                if regressed > 0 { "bad" } else { "muted" },
            ),
        ];
        let mut out = String::from("<section class=\"cards\">");
        for (n, label, cls) in cards {
            let cls = if n == 0 && cls != "bad" { "muted" } else { cls };
            let _ = write!(
                out,
                "<div class=\"card {cls}\"><div class=\"num\">{n}</div><div class=\"label\">{label}</div></div>"
            );
        }
        out.push_str("</section>\n");
        out
    }

    /// A short list of what went wrong, each linking to its details.
    fn failures(&self) -> String {
        let r = self.record;
        let mut items = Vec::new();
        for p in r.phases.iter().filter(|p| p.error.is_some()) {
            items.push(format!(
                "<li>{} <a href=\"#phase-{}\">lifecycle / {}</a>: {}</li>",
                badge("bad", "ERROR"),
                p.phase.name(),
                p.phase.name(),
                esc(p.error.as_deref().unwrap_or_default())
            ));
        }
        for s in r.suites.iter().filter(|s| s.error.is_some()) {
            let not_run = s.tests.iter().filter(|t| never_ran(t)).count();
            let not_run = match not_run {
                0 => String::new(),
                n => format!(" <span class=\"dim\">({n} test(s) not run)</span>"),
            };
            items.push(format!(
                "<li>{} <a href=\"#suite-{}\">{} (suite)</a>: {}{not_run}</li>",
                badge("bad", "ERROR"),
                slug(&s.name),
                esc(&s.name),
                esc(s.error.as_deref().unwrap_or_default())
            ));
        }
        let failed = r.tests().filter(|t| outcome_rank(t.outcome) == 0);
        for t in failed.filter(|t| !never_ran(t)) {
            items.push(format!(
                "<li>{} <a href=\"#{}\">{} / {}</a>{}</li>",
                badge("bad", outcome_word(t.outcome)),
                test_id(t),
                esc(&t.suite),
                esc(&t.name),
                t.message
                    .as_deref()
                    .map(|m| format!(": {}", esc(m)))
                    .unwrap_or_default()
            ));
        }
        for m in self
            .gate
            .metrics
            .iter()
            .filter(|m| m.verdict == Verdict::Regressed)
        {
            items.push(format!(
                "<li>{} <a href=\"#{}\">{}</a>: {}</li>",
                badge("bad", "REGRESSED"),
                metric_id(m),
                esc(&m.key.to_string()),
                esc(&change_text(m))
            ));
        }
        if items.is_empty() {
            return String::new();
        }
        format!(
            "<section class=\"failures\"><h2>What failed</h2><ul>{}</ul></section>\n",
            items.join("")
        )
    }

    fn tests(&self) -> String {
        let r = self.record;
        let mut out = String::from("<section id=\"tests\"><h2>Tests</h2>\n");
        for s in r.suites.iter().filter(|s| s.error.is_some()) {
            let prefix = format!("{}-setup", slug(&s.name));
            let _ = writeln!(
                out,
                "<details class=\"test bad\" id=\"suite-{}\" open><summary>{}<span class=\"name\">{} \
                 <span class=\"dim\">(suite setup)</span></span></summary><div class=\"body\">\
                 <p class=\"message\">{}</p>{}</div></details>",
                slug(&s.name),
                badge("bad", "ERROR"),
                esc(&s.name),
                esc(s.error.as_deref().unwrap_or_default()),
                logs::render(&self.run_dir.join(&s.name).join("setup.log"), &prefix)
            );
        }
        let mut tests: Vec<&TestRecord> = r.tests().collect();
        tests.sort_by_key(|t| (outcome_rank(t.outcome), never_ran(t)));
        if tests.is_empty() {
            out.push_str("<p class=\"note\">No tests ran.</p>");
        }
        for t in tests {
            out.push_str(&self.test(t));
        }
        out.push_str("</section>\n");
        out
    }

    fn test(&self, t: &TestRecord) -> String {
        let (cls, open) = match (never_ran(t), outcome_rank(t.outcome)) {
            (true, _) => ("muted", ""),
            (false, 0) => (outcome_class(t.outcome), " open"),
            (false, _) => (outcome_class(t.outcome), ""),
        };
        let mut body = String::new();
        if let Some(m) = &t.message {
            let _ = write!(body, "<p class=\"message\">{}</p>", esc(m));
        }
        let _ = write!(
            body,
            "<p class=\"cmd\"><code>$ {}</code> <span class=\"dim\">on {}</span></p>",
            esc(&t.command),
            esc(&t.vm)
        );
        if !t.failed_attempts.is_empty() {
            let attempts: Vec<String> = t
                .failed_attempts
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    format!(
                        "<li>attempt {}: {} after {}{}</li>",
                        i + 1,
                        outcome_word(a.outcome).to_lowercase(),
                        human(a.duration),
                        a.message
                            .as_deref()
                            .map(|m| format!(": {}", esc(m)))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let _ = write!(body, "<ul class=\"attempts\">{}</ul>", attempts.join(""));
        }
        if never_ran(t) {
            // Its suite's setup failed, or the run was stopped: the suite's entry has the log.
            return self.test_entry(t, cls, open, &body);
        }
        body.push_str(&logs::render(&self.run_dir.join(&t.log), &test_id(t)));
        let _ = write!(
            body,
            "<p class=\"raw\"><a href=\"../{}\">raw log</a></p>",
            esc(&t.log.to_string_lossy())
        );
        self.test_entry(t, cls, open, &body)
    }

    /// A test's collapsible entry around its `body`.
    fn test_entry(&self, t: &TestRecord, cls: &str, open: &str, body: &str) -> String {
        let word = if never_ran(t) {
            "NOT RUN"
        } else {
            outcome_word(t.outcome)
        };
        format!(
            "<details class=\"test {cls}\" id=\"{id}\"{open}><summary>{badge}<span class=\"name\">{suite} / {name}</span>\
             <span class=\"dur\">{dur}</span></summary><div class=\"body\">{body}</div></details>\n",
            id = test_id(t),
            badge = badge(cls, word),
            suite = esc(&t.suite),
            name = esc(&t.name),
            dur = human(t.duration),
        )
    }

    fn benchmarks(&self) -> String {
        let benches: Vec<&BenchRecord> = self.record.benchmarks().collect();
        if benches.is_empty() {
            return String::new();
        }
        let mut out = format!(
            "<section id=\"benchmarks\"><h2>Benchmarks</h2><p class=\"dim\">Compared with {} \
             (minimum effect {}, Mann–Whitney U at α = {}, beyond the run-to-run noise of two or \
             more baseline runs).</p>\n",
            esc(&self
                .gate
                .baseline
                .describe(self.gate.allow_different_conditions)),
            format_percent(self.gate.min_effect),
            crate::gate::ALPHA
        );
        if let Some(note) = self.gate_note {
            let _ = write!(out, "<p class=\"warning\">{}</p>", esc(note));
        }
        for b in benches {
            out.push_str(&self.benchmark(b));
        }
        out.push_str("</section>\n");
        out
    }

    fn benchmark(&self, b: &BenchRecord) -> String {
        let mut out = format!(
            "<article class=\"bench\"><h3>{} / {}</h3><p class=\"dim\">on {} · {} · \
             <a href=\"../{}\">log</a></p>",
            esc(&b.suite),
            esc(&b.name),
            esc(&b.vm),
            human(b.duration),
            esc(&b.log.to_string_lossy())
        );
        if let Some(e) = &b.error {
            let _ = write!(out, "<p class=\"message\">{}</p>", esc(e));
        }
        let judged = self
            .gate
            .metrics
            .iter()
            .filter(|m| m.key.suite == b.suite && m.key.benchmark == b.name);
        for m in judged {
            out.push_str(&metric(m));
        }
        out.push_str("</article>\n");
        out
    }

    fn details(&self) -> String {
        let r = self.record;
        let mut rows: Vec<(String, String)> = Vec::new();
        if let Some(b) = &r.box_info {
            rows.push((
                "box".into(),
                format!("{} {}", esc(&b.name), esc(&b.version)),
            ));
            rows.push((
                "box sha256".into(),
                format!("<code>{}</code>", esc(&b.sha256)),
            ));
        }
        match &r.conditions {
            Some(c) => {
                rows.push((
                    "host".into(),
                    format!(
                        "{} · {} · {} cores · kernel {}",
                        esc(&c.host.hostname),
                        esc(&c.host.cpu_model),
                        c.host.cores,
                        esc(&c.host.kernel)
                    ),
                ));
                rows.push((
                    "VMs".into(),
                    format!(
                        "{} vCPU · {} MiB · {}",
                        c.vm_cpus,
                        c.vm_memory_mib,
                        esc(&c.accel)
                    ),
                ));
                let commit = c.lab_commit.as_deref().unwrap_or("unknown");
                rows.push(("lab commit".into(), format!("<code>{}</code>", esc(commit))));
                rows.push(("metalab".into(), esc(&c.metalab_version)));
            }
            None => rows.push(("conditions".into(), "not recorded by this run".into())),
        }
        for vm in &r.vms {
            rows.push((format!("vm {}", esc(&vm.name)), esc(&vm.address)));
        }
        let table: String = rows
            .iter()
            .map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>"))
            .collect();
        let notices: String = r
            .notices
            .iter()
            .map(|n| format!("<p class=\"warning\">{}</p>", esc(n)))
            .collect();
        format!(
            "<section id=\"run\"><h2>Run</h2>{notices}<div class=\"two\"><table class=\"kv\">{table}</table>{}</div></section>\n",
            self.phases()
        )
    }

    fn phases(&self) -> String {
        let mut out = String::from(
            "<table class=\"phases\"><thead><tr><th>phase</th><th>took</th><th></th></tr></thead><tbody>",
        );
        for p in &self.record.phases {
            let state = match &p.error {
                Some(e) => badge("bad", "ERROR") + &format!(" {}", esc(e)),
                None => badge("good", "OK"),
            };
            let name = match &p.log {
                Some(log) => format!(
                    "<a href=\"../{}\">{}</a>",
                    esc(&log.to_string_lossy()),
                    p.phase.name()
                ),
                None => p.phase.name().to_string(),
            };
            let _ = write!(
                out,
                "<tr id=\"phase-{}\"><td>{name}</td><td>{}</td><td>{state}</td></tr>",
                p.phase.name(),
                human(p.duration)
            );
        }
        out.push_str("</tbody></table>");
        for p in self.record.phases.iter().filter(|p| p.error.is_some()) {
            if let Some(log) = &p.log {
                let _ = write!(
                    out,
                    "<details class=\"test bad\" open><summary>{} <span class=\"name\">{} log</span></summary>\
                     <div class=\"body\">{}</div></details>",
                    badge("bad", "ERROR"),
                    p.phase.name(),
                    logs::render(
                        &self.run_dir.join(log),
                        &format!("lifecycle-{}", p.phase.name())
                    )
                );
            }
        }
        out
    }

    fn artifact_list(&self) -> String {
        if self.artifacts.is_empty() {
            return String::new();
        }
        let rows: String = self
            .artifacts
            .iter()
            .map(|(path, size)| {
                format!(
                    "<tr><td><a href=\"../{p}\">{p}</a></td><td class=\"num\">{}</td></tr>",
                    bytes(*size),
                    p = esc(path)
                )
            })
            .collect();
        format!(
            "<section id=\"artifacts\"><details><summary><h2>Artifacts <span class=\"dim\">({} files)</span></h2></summary>\
             <table class=\"files\">{rows}</table></details></section>\n",
            self.artifacts.len()
        )
    }
}

/// One metric: verdict, numbers, why, the two plots and the notes.
fn metric(m: &MetricVerdict) -> String {
    let cls = verdict_class(m.verdict);
    let (samples, history) = plot_names(m);
    let this = crate::stats::quantile(&m.current, 0.5)
        .map(format_value)
        .unwrap_or_default();
    let direction = match m.direction {
        crate::model::record::Direction::Higher => "higher is better",
        crate::model::record::Direction::Lower => "lower is better",
    };
    let mut notes: Vec<String> = Vec::new();
    if let Some(reason) = &m.reason {
        notes.push(esc(reason));
    }
    if let Some(note) = &m.conditions_note {
        notes.push(esc(note));
    }
    if !m.baseline_runs.is_empty() {
        notes.push(format!(
            "baseline: {} run(s), {} samples",
            m.baseline_runs.len(),
            m.baseline.len()
        ));
    }
    for cp in &m.change_points {
        notes.push(format!(
            "<span class=\"cp\">change point</span> at run {} ({}): {} → {} {} (p {:.3})",
            esc(cp.run_id.as_str()),
            cp.started.format("%Y-%m-%d %H:%M"),
            format_value(cp.before),
            format_value(cp.after),
            esc(&m.unit),
            cp.p_value
        ));
    }
    let notes: String = notes.iter().map(|n| format!("<li>{n}</li>")).collect();
    format!(
        "<div class=\"metric {cls}\" id=\"{id}\"><div class=\"metric-head\">{badge}\
         <span class=\"mname\">{name}</span><span class=\"value\">{this} {unit}</span>\
         <span class=\"dim\">{change} · {direction}</span></div><ul class=\"notes\">{notes}</ul>\
         <div class=\"plots\"><img src=\"plots/{samples}\" alt=\"{alt} samples in this run\" width=\"600\" height=\"340\">\
         <img src=\"plots/{history}\" alt=\"{alt} history\" width=\"600\" height=\"340\"></div></div>",
        id = metric_id(m),
        badge = badge(cls, &verdict_word(m.verdict).to_uppercase()),
        name = esc(&m.key.metric),
        unit = esc(&m.unit),
        change = esc(&change_text(m)),
        alt = esc(&m.key.to_string()),
    )
}

/// `−18.0% vs 2.817 (p = 0.008)`, or what is known without a comparison.
fn change_text(m: &MetricVerdict) -> String {
    match &m.comparison {
        Some(c) => {
            let change = c
                .change
                .map_or("n/a".into(), |x| format!("{:+.1}%", x * 100.0));
            format!(
                "{change} vs baseline {} {} (p = {:.3})",
                format_value(c.baseline_median),
                m.unit,
                c.p_value
            )
        }
        None => format!("{} sample(s), no baseline", m.current.len()),
    }
}

/// A test with no log never started (its suite's setup failed, or the run was stopped).
fn never_ran(t: &TestRecord) -> bool {
    t.log.as_os_str().is_empty()
}

fn test_id(t: &TestRecord) -> String {
    test_anchor(&t.suite, &t.name)
}

fn metric_id(m: &MetricVerdict) -> String {
    format!(
        "metric-{}",
        plot_names(m).0.trim_end_matches("-samples.svg")
    )
}

fn short(text: &str, n: usize) -> &str {
    text.get(..n).unwrap_or(text)
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// Opens the collapsed sections that hold the line a link points at. On load this runs before
/// the browser scrolls to the fragment; on a later link it scrolls once the line is visible.
const OPEN_TARGET_JS: &str = "function openTarget(){var h=decodeURIComponent(location.hash.slice(1));\
var e=h&&document.getElementById(h);if(!e)return null;\
for(var p=e.parentElement;p;p=p.parentElement){if(p.tagName==='DETAILS')p.open=true;}return e;}\
window.addEventListener('hashchange',function(){var e=openTarget();if(e)e.scrollIntoView({block:'center'});});\
openTarget();";
