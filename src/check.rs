//! `wsgate check`: load and translate offline exactly as `run` does, and report.

use crate::ir::{Listener, Route, RouteTable};
use crate::reconcile::{self, ReadProblem, View, files};
use crate::translate::{Diagnostic, Options, Severity};
use std::fmt::Write as _;
use std::path::Path;

/// Everything `check` found.
#[derive(Debug)]
pub struct Report {
    /// Files or documents that could not be read (errors) or were skipped (warnings).
    pub read: Vec<ReadProblem>,
    /// Translation errors and warnings.
    pub diagnostics: Vec<Diagnostic>,
    /// The resulting routing table.
    pub table: RouteTable,
    /// Wanted status of the Gateway API objects.
    pub gateway_api: crate::translate::gateway_api::GatewayApiReport,
}

impl Report {
    /// Whether `run` would refuse this configuration.
    pub fn has_errors(&self) -> bool {
        self.read.iter().any(|p| p.severity == Severity::Error)
            || self
                .diagnostics
                .iter()
                .any(|d| d.severity == Severity::Error)
    }
}

/// Loads and translates `path` with the reconcile loop's own read + translate step.
pub fn check(path: &Path, options: &Options) -> Report {
    let (view, t) = reconcile::evaluate(files::read(path), options);
    Report {
        read: view.problems(),
        diagnostics: t.diagnostics,
        table: t.table,
        gateway_api: t.gateway_api,
    }
}

/// The human-readable report `wsgate check` prints.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for p in &report.read {
        let _ = writeln!(out, "{p}");
    }
    for d in &report.diagnostics {
        let _ = writeln!(out, "{d}");
    }
    out.push_str(&render_table(&report.table));
    let errors = report
        .read
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count()
        + report
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
    let warnings = report.read.len() + report.diagnostics.len() - errors;
    let _ = writeln!(out, "{errors} error(s), {warnings} warning(s)");
    out
}

/// The routing table as indented text.
pub fn render_table(table: &RouteTable) -> String {
    let mut out = String::from("routing table:\n");
    let line = |out: &mut String, indent: &str, label: String, r: &Route| {
        let b = &table.backends[r.backend];
        let eps: Vec<String> = b.endpoints.iter().map(|e| e.to_string()).collect();
        let eps = if eps.is_empty() {
            "no endpoints (503)".to_string()
        } else {
            eps.join(", ")
        };
        let _ = writeln!(out, "{indent}{label} -> {} [{}] route={}", b.id, eps, r.id);
    };
    for Listener {
        port,
        protocol,
        virtual_hosts,
        default_route,
        ..
    } in table.listeners.iter()
    {
        let _ = writeln!(out, "  listener :{port} ({protocol:?})");
        for vh in virtual_hosts.iter() {
            let _ = writeln!(out, "    host {}", vh.host);
            for r in vh.routes.iter() {
                let kind = match r.path {
                    crate::ir::PathMatch::Exact(_) => "Exact",
                    crate::ir::PathMatch::Prefix(_) => "Prefix",
                    crate::ir::PathMatch::Regex(_) => "RegularExpression",
                };
                line(&mut out, "      ", format!("{kind} {}", r.path.path()), r);
            }
        }
        if let Some(r) = default_route {
            line(&mut out, "    ", "default".into(), r);
        }
    }
    out
}
