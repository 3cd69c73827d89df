//! `<artifacts>/index.html`: the dashboard of the newest runs' tests, then the newest runs in the
//! history, newest first, each linking to its report.

use std::fmt::Write;
use std::path::Path;

use super::dashboard;
use super::page::{badge, esc, status_class};
use super::{REPORT_DIR, REPORT_FILE};
use crate::history::RunSummary;
use crate::report::files::RESULTS_JSON;
use crate::report::gate::Browsed;
use crate::report::summary::human;

pub fn body(browsed: &Browsed, artifacts: &Path) -> String {
    let runs = &browsed.runs;
    let mut rows = String::new();
    for r in runs {
        let id = r.run_id.as_str();
        let report = format!("{id}/{REPORT_DIR}/{REPORT_FILE}");
        let results = format!("{id}/{RESULTS_JSON}");
        let link = if artifacts.join(&report).is_file() {
            format!("<a href=\"{}\">{}</a>", esc(&report), esc(id))
        } else if artifacts.join(&results).is_file() {
            format!(
                "<a href=\"{}\">{}</a> <span class=\"dim\">(no report)</span>",
                esc(&results),
                esc(id)
            )
        } else {
            format!(
                "{} <span class=\"dim\">(not on this machine)</span>",
                esc(id)
            )
        };
        let commit = r.commit.as_deref().map_or(String::new(), |c| {
            format!("<code>{}</code>", esc(c.get(..12).unwrap_or(c)))
        });
        let _ = write!(
            rows,
            "<tr><td>{}</td><td class=\"runid\">{link}</td><td>{}</td><td>{commit}</td><td>{}</td>\
             <td class=\"num\">{}/{}</td><td class=\"num\">{}</td></tr>",
            badge(status_class(r.status), r.status.word()),
            r.started.format("%Y-%m-%d %H:%M"),
            esc(&r.host),
            r.tests_passed,
            r.tests_total,
            human(r.duration),
        );
    }
    let table = if runs.is_empty() {
        "<p class=\"note\">The history holds no runs yet.</p>".to_string()
    } else {
        format!(
            "<table class=\"runs\"><thead><tr><th>status</th><th>run</th><th>started (UTC)</th>\
             <th>commit</th><th>host</th><th class=\"num\">tests passed</th><th class=\"num\">took</th>\
             </tr></thead><tbody>{rows}</tbody></table>{}",
            older_runs(runs, browsed.total)
        )
    };
    format!(
        "<header class=\"top neutral\"><div class=\"wrap\"><h1>metalab dashboard</h1>\
         <p class=\"meta\">{} run(s) in the history</p></div></header>\
         <main class=\"wrap\">{}<section id=\"runs\"><h2>Runs, newest first</h2>{table}</section>\
         </main>",
        browsed.total,
        dashboard::sections(&browsed.grid, artifacts)
    )
}

/// A note under the list when the history holds more runs than it shows.
fn older_runs(shown: &[RunSummary], total: usize) -> String {
    match total.saturating_sub(shown.len()) {
        0 => String::new(),
        older => format!(
            "<p class=\"note\">{older} older run(s) are not listed: \
             <code>metalab history --limit {total}</code> lists them all.</p>"
        ),
    }
}
