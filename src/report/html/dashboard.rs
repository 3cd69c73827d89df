//! The dashboard at the top of `<artifacts>/index.html`: the tests against the newest runs (a
//! cell a run, linking to the test in that run's report, a failure to its log's first failing
//! line), each test's failure and flake rates, "failing since", "last passed" and a duration
//! trend; filters that need no server, kept in the URL's fragment so a view can be shared; and
//! infrastructure errors apart, by host.

use std::fmt::Write;
use std::path::Path;
use std::time::Duration;

use super::logs::{first_failing_line, line_id};
use super::page::{badge, esc, status_class, test_anchor};
use super::{REPORT_DIR, REPORT_FILE};
use crate::history::RunSummary;
use crate::ids::RunId;
use crate::report::grid::{Cell, Grid, TestLine};

/// The filters' script: reads the fragment (`#suite=net&status=failed&failing=1&flaky=1`) into
/// the controls, shows the rows that match, and writes the controls back into the fragment.
const SCRIPT: &str = r##"
(function () {
  var form = document.getElementById("filters");
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr.test"));
  var suites = Array.prototype.slice.call(document.querySelectorAll("tr.suite"));
  var count = document.getElementById("shown");
  function read() {
    var p = new URLSearchParams(location.hash.slice(1));
    form.suite.value = p.get("suite") || "";
    form.status.value = p.get("status") || "";
    form.failing.checked = p.get("failing") === "1";
    form.flaky.checked = p.get("flaky") === "1";
  }
  function apply() {
    var suite = form.suite.value, status = form.status.value, shown = 0;
    rows.forEach(function (r) {
      var ok = (!suite || r.dataset.suite === suite) &&
        (!status || r.dataset.statuses.split(" ").indexOf(status) >= 0) &&
        (!form.failing.checked || r.dataset.failing === "1") &&
        (!form.flaky.checked || r.dataset.flaky === "1");
      r.hidden = !ok;
      if (ok) { shown += 1; }
    });
    suites.forEach(function (s) {
      s.hidden = !rows.some(function (r) { return !r.hidden && r.dataset.suite === s.dataset.suite; });
    });
    count.textContent = shown + " of " + rows.length + " tests";
  }
  function write() {
    var p = new URLSearchParams();
    if (form.suite.value) { p.set("suite", form.suite.value); }
    if (form.status.value) { p.set("status", form.status.value); }
    if (form.failing.checked) { p.set("failing", "1"); }
    if (form.flaky.checked) { p.set("flaky", "1"); }
    history.replaceState(null, "", "#" + p.toString());
    apply();
  }
  form.addEventListener("change", write);
  window.addEventListener("hashchange", function () { read(); apply(); });
  read();
  apply();
})();
"##;

/// The dashboard's sections, for runs whose files are under `artifacts`.
pub fn sections(grid: &Grid, artifacts: &Path) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<section id=\"tests\"><h2>Tests in the newest {} run(s)</h2>",
        grid.runs.len()
    );
    if grid.tests.is_empty() {
        out.push_str("<p class=\"note\">No test results in the history yet.</p></section>");
    } else {
        out.push_str(&filters(grid));
        out.push_str(&table(grid, artifacts));
        let _ = write!(out, "</section><script>{SCRIPT}</script>");
    }
    out.push_str(&benchmarks(grid, artifacts));
    out.push_str(&infra(grid, artifacts));
    out
}

fn filters(grid: &Grid) -> String {
    let mut suites: Vec<&str> = grid.tests.iter().map(|t| t.suite.as_str()).collect();
    suites.dedup();
    let options: String = suites
        .iter()
        .map(|s| format!("<option value=\"{0}\">{0}</option>", esc(s)))
        .collect();
    format!(
        "<form id=\"filters\" class=\"filters\">\
         <label>suite <select name=\"suite\"><option value=\"\">all</option>{options}</select></label>\
         <label>status in a run <select name=\"status\"><option value=\"\">any</option>\
         <option value=\"failed\">failed</option><option value=\"flaky\">flaky</option>\
         <option value=\"infra\">infrastructure error</option><option value=\"passed\">passed</option>\
         <option value=\"notrun\">not run</option></select></label>\
         <label><input type=\"checkbox\" name=\"failing\"> only failing now</label>\
         <label><input type=\"checkbox\" name=\"flaky\"> only flaky</label>\
         <span id=\"shown\" class=\"dim\"></span></form>"
    )
}

fn table(grid: &Grid, artifacts: &Path) -> String {
    let mut head = String::from(
        "<tr><th>test</th><th>failed</th><th>flaky</th><th>failing since</th>\
         <th>last passed</th><th>duration</th>",
    );
    for r in &grid.runs {
        let title = format!(
            "{} · {} · {}{}",
            r.run_id,
            r.status.word(),
            r.host,
            r.commit
                .as_deref()
                .map_or(String::new(), |c| format!(" · {}", short(c)))
        );
        let _ = write!(
            head,
            "<th class=\"run {}\" title=\"{}\">{}</th>",
            status_class(r.status),
            esc(&title),
            run_link(
                &r.run_id,
                artifacts,
                "",
                &r.started.format("%m-%d %H:%M").to_string()
            )
        );
    }
    head.push_str("</tr>");
    let mut body = String::new();
    let columns = 6 + grid.runs.len();
    let mut suite = "";
    for t in &grid.tests {
        if t.suite != suite {
            suite = &t.suite;
            let _ = write!(
                body,
                "<tr class=\"suite\" data-suite=\"{0}\"><th colspan=\"{columns}\">{0}</th></tr>",
                esc(suite)
            );
        }
        body.push_str(&row(t, grid, artifacts));
    }
    format!(
        "<div class=\"gridwrap\"><table class=\"grid\"><thead>{head}</thead><tbody>{body}</tbody>\
         </table></div>"
    )
}

fn row(t: &TestLine, grid: &Grid, artifacts: &Path) -> String {
    let mut statuses: Vec<&str> = t.cells.iter().map(|c| class(*c)).collect();
    statuses.sort_unstable();
    statuses.dedup();
    let since = t
        .failing_since
        .as_ref()
        .map_or(String::new(), |(run, commit)| {
            let label = match commit {
                Some(c) => format!("{} ({})", short_run(run), short(c)),
                None => short_run(run),
            };
            run_link(run, artifacts, &test_anchor(&t.suite, &t.name), &label)
        });
    let last = t.last_passed.as_ref().map_or("never".to_string(), |run| {
        run_link(
            run,
            artifacts,
            &test_anchor(&t.suite, &t.name),
            &short_run(run),
        )
    });
    let mut out = format!(
        "<tr class=\"test\" id=\"test-{anchor}\" data-suite=\"{suite}\" data-statuses=\"{statuses}\" \
         data-failing=\"{failing}\" data-flaky=\"{flaky}\"><td class=\"name\">{name}</td>\
         <td class=\"num\">{failed}</td><td class=\"num\">{flakes}</td><td>{since}</td>\
         <td>{last}</td><td>{trend}</td>",
        anchor = test_anchor(&t.suite, &t.name),
        suite = esc(&t.suite),
        statuses = statuses.join(" "),
        failing = u8::from(t.failing()),
        flaky = u8::from(t.flakes > 0),
        name = esc(&t.name),
        failed = percent(t.failure_rate(), t.ran),
        flakes = percent(t.flake_rate(), t.ran),
        trend = trend(&t.durations),
    );
    for (run, cell) in grid.runs.iter().zip(&t.cells) {
        out.push_str(&cell_html(t, run, *cell, artifacts));
    }
    out.push_str("</tr>");
    out
}

/// A cell: a link to the test in the run's report (a failure: to its first failing log line)
/// when the report is here, else the mark alone.
fn cell_html(t: &TestLine, run: &RunSummary, cell: Cell, artifacts: &Path) -> String {
    let mark = match cell {
        Cell::Passed => "✓",
        Cell::Flaky => "~",
        Cell::Failed => "✗",
        Cell::Infra => "!",
        Cell::NotRun => "·",
    };
    let title = format!(
        "{} / {} in {}: {}",
        t.suite,
        t.name,
        run.run_id,
        cell.word()
    );
    let anchor = test_anchor(&t.suite, &t.name);
    let target = match cell {
        Cell::NotRun => None,
        Cell::Failed => {
            Some(failing_line(t, run, artifacts).map_or(anchor.clone(), |n| line_id(&anchor, n)))
        }
        _ => Some(anchor),
    };
    let inner = match target {
        Some(anchor) if report_of(&run.run_id, artifacts).is_some() => {
            run_link(&run.run_id, artifacts, &anchor, mark)
        }
        _ => format!("<span>{mark}</span>"),
    };
    format!(
        "<td class=\"cell {}\" title=\"{}\">{inner}</td>",
        class(cell),
        esc(&title)
    )
}

/// The first failing line of the test's log in `run`, when the log is here.
fn failing_line(t: &TestLine, run: &RunSummary, artifacts: &Path) -> Option<usize> {
    let log = t.logs.get(&run.run_id)?;
    let text = std::fs::read(artifacts.join(run.run_id.as_str()).join(log)).ok()?;
    first_failing_line(&String::from_utf8_lossy(&text))
}

fn class(cell: Cell) -> &'static str {
    match cell {
        Cell::Passed => "passed",
        Cell::Flaky => "flaky",
        Cell::Failed => "failed",
        Cell::Infra => "infra",
        Cell::NotRun => "notrun",
    }
}

/// The run's report page, relative to the artifacts directory, when it is there.
fn report_of(run: &RunId, artifacts: &Path) -> Option<String> {
    let page = format!("{run}/{REPORT_DIR}/{REPORT_FILE}");
    artifacts.join(&page).is_file().then_some(page)
}

/// `label` linking to the run's report at `anchor` when the report is here, else plain.
fn run_link(run: &RunId, artifacts: &Path, anchor: &str, label: &str) -> String {
    match report_of(run, artifacts) {
        Some(page) if anchor.is_empty() => format!("<a href=\"{}\">{}</a>", esc(&page), esc(label)),
        Some(page) => format!(
            "<a href=\"{}#{}\">{}</a>",
            esc(&page),
            esc(anchor),
            esc(label)
        ),
        None => esc(label),
    }
}

fn short(commit: &str) -> &str {
    commit.get(..10).unwrap_or(commit)
}

/// A run id without its seconds and tag: `11-01 08:00`.
fn short_run(run: &RunId) -> String {
    let id = run.as_str();
    match (id.get(4..6), id.get(6..8), id.get(9..11), id.get(11..13)) {
        (Some(mo), Some(d), Some(h), Some(mi)) => format!("{mo}-{d} {h}:{mi}"),
        _ => id.to_string(),
    }
}

fn percent(rate: f64, of: usize) -> String {
    if of == 0 {
        "–".to_string()
    } else {
        format!("{:.0}%", rate * 100.0)
    }
}

/// The test's duration over the runs it ran in, oldest to newest, as a small line.
fn trend(durations: &[Option<Duration>]) -> String {
    let secs: Vec<Option<f64>> = durations
        .iter()
        .map(|d| d.map(|d| d.as_secs_f64()))
        .collect();
    sparkline(&secs, &[], "s")
}

/// `values` (newest first, `None` where there is none) as a small line, oldest to newest, with
/// a mark at each of the `marked` columns (shifts).
fn sparkline(values: &[Option<f64>], marked: &[usize], unit: &str) -> String {
    let points: Vec<(usize, f64)> = values
        .iter()
        .enumerate()
        .rev()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .collect();
    if points.len() < 2 {
        return String::new();
    }
    let (w, h) = (120.0, 18.0);
    let max = points.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let min = points.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let span = (max - min).max(1e-9);
    let step = w / (points.len() - 1) as f64;
    let x = |n: usize| n as f64 * step;
    let line: Vec<String> = points
        .iter()
        .enumerate()
        .map(|(n, (_, v))| format!("{:.1},{:.1}", x(n), h - 1.0 - (v - min) / span * (h - 2.0)))
        .collect();
    let marks: String = points
        .iter()
        .enumerate()
        .filter(|(_, (column, _))| marked.contains(column))
        .map(|(n, _)| {
            format!(
                "<line class=\"shift\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"0\" y2=\"{h}\"/>",
                x(n)
            )
        })
        .collect();
    format!(
        "<svg class=\"trend\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\">\
         <title>{} to {} {}</title>{marks}<polyline points=\"{}\"/></svg>",
        figure(min),
        figure(max),
        esc(unit),
        line.join(" ")
    )
}

/// A number as people read it: three significant digits or so.
fn figure(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Each benchmark metric over the runs: its newest median, its line with the shifts marked, and
/// the shifts the gate would call changes (each linking to the first run at the new level).
fn benchmarks(grid: &Grid, artifacts: &Path) -> String {
    if grid.metrics.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    for m in &grid.metrics {
        let marked: Vec<usize> = m
            .shifts
            .iter()
            .filter_map(|(run, _, _)| grid.runs.iter().position(|r| &r.run_id == run))
            .collect();
        let newest = m
            .medians
            .iter()
            .flatten()
            .next()
            .map_or("–".into(), |v| figure(*v));
        let shifts: Vec<String> = m
            .shifts
            .iter()
            .map(|(run, before, after)| {
                format!(
                    "{}: {} → {} ({:+.1}%)",
                    run_link(run, artifacts, "benchmarks", &short_run(run)),
                    figure(*before),
                    figure(*after),
                    (after - before) / before.abs().max(f64::MIN_POSITIVE) * 100.0
                )
            })
            .collect();
        let shown = if shifts.is_empty() {
            "none".to_string()
        } else {
            shifts.join("<br>")
        };
        let _ = write!(
            rows,
            "<tr class=\"metric\"><td class=\"name\">{}</td><td class=\"num\">{newest} {}</td>\
             <td>{}</td><td>{shown}</td></tr>",
            esc(&m.name),
            esc(&m.unit),
            sparkline(&m.medians, &marked, &m.unit),
        );
    }
    format!(
        "<section id=\"benchmarks\"><h2>Benchmarks in the newest {} run(s)</h2>\
         <div class=\"gridwrap\"><table class=\"grid\"><thead><tr><th>metric</th>\
         <th>newest median</th><th>run medians</th><th>shifts (at least the gate's minimum \
         effect)</th></tr></thead><tbody>{rows}</tbody></table></div></section>",
        grid.runs.len()
    )
}

/// Runs that ended in an infrastructure error, by host: apart from the tests' own failures.
fn infra(grid: &Grid, artifacts: &Path) -> String {
    let by_host = grid.infra_by_host();
    if by_host.is_empty() {
        return format!(
            "<section id=\"infra\"><h2>Infrastructure errors</h2><p class=\"note\">None in the \
             newest {} run(s).</p></section>",
            grid.runs.len()
        );
    }
    let rows: String = by_host
        .iter()
        .map(|(host, n)| format!("<tr><td>{}</td><td class=\"num\">{n}</td></tr>", esc(host)))
        .collect();
    let runs: String = grid
        .runs
        .iter()
        .filter(|r| r.status == crate::exit::Status::InfraError)
        .map(|r| {
            format!(
                "<li>{} {} on {}</li>",
                badge(status_class(r.status), r.status.word()),
                run_link(&r.run_id, artifacts, "", r.run_id.as_str()),
                esc(&r.host)
            )
        })
        .collect();
    format!(
        "<section id=\"infra\"><h2>Infrastructure errors</h2><table class=\"runs\"><thead><tr>\
         <th>host</th><th class=\"num\">runs</th></tr></thead><tbody>{rows}</tbody></table>\
         <ul>{runs}</ul></section>"
    )
}
