//! The reconcile loop both modes share: read a source -> translate -> apply, once per debounced
//! burst of changes. `wsgate check` uses the same read + translate step ([`evaluate`]).
//!
//! Reading and translating run on a blocking thread (`spawn_blocking`): a large or pathological
//! input costs that thread, never a proxy worker, so traffic keeps flowing while it is judged.

pub mod debounce;
pub mod files;

use crate::proxy::{BindError, Proxy};
use crate::source::Snapshot;
use crate::translate::{self, Diagnostic, Options, Severity, Translated};
use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// A problem found while reading the input, before translation (a file that does not parse, an
/// object of a newer CRD version), naming where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadProblem {
    /// Error (the input cannot be used as is) or warning (something was skipped).
    pub severity: Severity,
    /// Where: `FILE: document N (Kind ns/name)` or `Kind ns/name`.
    pub location: String,
    /// The field path, when known.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ReadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.field.is_empty() {
            write!(f, "{sev}: {}: {}", self.location, self.message)
        } else {
            write!(
                f,
                "{sev}: {}: {}: {}",
                self.location, self.field, self.message
            )
        }
    }
}

/// What a source read at one moment.
pub trait View: Send + Sync + 'static {
    /// The objects translation reads.
    fn snapshot(&self) -> &Snapshot;
    /// Problems found while reading.
    fn problems(&self) -> Vec<ReadProblem>;
}

/// An input the loop reconciles: YAML files or the cluster.
pub trait Source: Send + 'static {
    /// What one read produces.
    type View: View;
    /// Waits until the input may have changed (debounced); `false` when it never will again.
    fn changed(&mut self) -> impl Future<Output = bool> + Send;
    /// A reader of the current input, run on a blocking thread.
    fn reader(&self) -> Box<dyn FnOnce() -> Self::View + Send>;
}

/// What to do with a translation that has errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Standalone mode: apply nothing; the last good table keeps serving ("never half-applied").
    KeepLastGood,
    /// Controller mode: apply what translated (bad objects are already left out) and report the
    /// errors on the objects: one team's typo must not freeze everyone's routing.
    ApplyRest,
}

/// One pass of the loop: what was read, what translation made of it, and what happened.
#[derive(Debug)]
pub struct Build<V> {
    /// What was read.
    pub view: V,
    /// Translation of `view.snapshot()`.
    pub translated: Translated,
    /// Ports of the applied table that could not be opened.
    pub bind_errors: Vec<BindError>,
    /// The error lines that stopped this build from being applied (`OnError::KeepLastGood`).
    pub rejected: Vec<String>,
}

/// Translates what was read: the one read + translate step of `run` (both modes) and `check`.
pub fn evaluate<V: View>(view: V, options: &Options) -> (V, Translated) {
    let translated = translate::translate(view.snapshot(), options);
    (view, translated)
}

/// Every error line of a read + translation (read problems first), as `check` prints them.
pub fn error_lines(problems: &[ReadProblem], translated: &Translated) -> Vec<String> {
    problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(ToString::to_string)
        .chain(
            translated
                .diagnostics
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .map(Diagnostic::to_string),
        )
        .collect()
}

/// How long the phases of one pass took (logged with each applied table, to see where a slow
/// reload goes).
#[derive(Clone, Copy, Debug, Default)]
struct Phases {
    read: std::time::Duration,
    translate: std::time::Duration,
}

/// Reads and translates a source's input on a blocking thread.
async fn read_and_translate<V: View>(
    reader: Box<dyn FnOnce() -> V + Send>,
    options: Options,
) -> Result<(V, Translated, Phases), String> {
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let view = reader();
        let read = t.elapsed();
        let (view, translated) = evaluate(view, &options);
        let translate = t.elapsed() - read;
        (view, translated, Phases { read, translate })
    })
    .await
    .map_err(|e| format!("reading the configuration failed: {e}"))
}

/// The loop's state: the proxy it feeds and what it logged last.
pub struct Reconciler<S: Source> {
    source: S,
    proxy: Proxy,
    options: Options,
    on_error: OnError,
    /// Problems logged by the previous pass (each is logged once while it lasts).
    logged: HashSet<String>,
    /// Bind errors of the last applied table (kept while the table does not change).
    bind_errors: Vec<BindError>,
    applied: bool,
}

impl<S: Source> Reconciler<S> {
    /// A loop over `source` feeding `proxy`.
    pub fn new(source: S, proxy: Proxy, options: Options, on_error: OnError) -> Self {
        Self {
            source,
            proxy,
            options,
            on_error,
            logged: HashSet::new(),
            bind_errors: Vec::new(),
            applied: false,
        }
    }

    /// One pass: read and translate (off the proxy's threads), log problems, apply the table
    /// when the policy allows and it differs from the serving one, count the reload.
    pub async fn pass(&mut self) -> Option<Build<S::View>> {
        let started = Instant::now();
        let (view, translated, phases) =
            match read_and_translate(self.source.reader(), self.options.clone()).await {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!("{e}");
                    self.count("error");
                    return None;
                }
            };
        let problems = view.problems();
        self.log(&problems, &translated);
        let errors = error_lines(&problems, &translated);
        if self.on_error == OnError::KeepLastGood && !errors.is_empty() {
            self.count("error");
            if self.applied {
                for e in &errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    errors = errors.len(),
                    "configuration rejected; the last good routing table keeps serving"
                );
            }
            return Some(Build {
                view,
                translated,
                bind_errors: self.bind_errors.clone(),
                rejected: errors,
            });
        }
        if !self.applied || *self.proxy.table() != translated.table {
            let applying = Instant::now();
            self.bind_errors = self.proxy.apply(translated.table.clone()).await;
            let apply = applying.elapsed();
            for e in &self.bind_errors {
                tracing::error!("{e}");
            }
            tracing::info!(
                result = if self.bind_errors.is_empty() { "ok" } else { "error" },
                first = !self.applied,
                took = ?started.elapsed(),
                read = ?phases.read,
                translate = ?phases.translate,
                apply = ?apply,
                problems = problems.len() + translated.diagnostics.len(),
                "routing table applied"
            );
            self.applied = true;
        } else {
            tracing::debug!("input changed; routing table unchanged");
        }
        self.count(if self.bind_errors.is_empty() {
            "ok"
        } else {
            "error"
        });
        Some(Build {
            view,
            translated,
            bind_errors: self.bind_errors.clone(),
            rejected: Vec::new(),
        })
    }

    /// Runs passes on every debounced change until the source ends or nobody listens to
    /// `builds` any more. The first pass happens at once unless `first_done` (the caller already
    /// ran it, as standalone start-up does).
    pub async fn run(
        mut self,
        first_done: bool,
        builds: watch::Sender<Option<Arc<Build<S::View>>>>,
    ) {
        if first_done && !self.source.changed().await {
            return;
        }
        loop {
            if let Some(build) = self.pass().await
                && builds.send(Some(Arc::new(build))).is_err()
            {
                return;
            }
            if !self.source.changed().await {
                return;
            }
        }
    }

    fn count(&self, result: &str) {
        self.proxy
            .metrics()
            .config_reloads
            .with_label_values(&[result])
            .inc();
    }

    /// Logs each problem once while it lasts (controller rebuilds happen on every object
    /// change; standalone logs its rejections separately, every time).
    fn log(&mut self, problems: &[ReadProblem], translated: &Translated) {
        let mut now = HashSet::new();
        for p in problems {
            let key = p.to_string();
            if !self.logged.contains(&key) {
                tracing::warn!(object = %p.location, field = %p.field, severity = ?p.severity, "{}", p.message);
            }
            now.insert(key);
        }
        for d in &translated.diagnostics {
            let key = d.to_string();
            if !self.logged.contains(&key) {
                tracing::warn!(object = %d.object, field = %d.field, severity = ?d.severity, "{}", d.message);
            }
            now.insert(key);
        }
        self.logged = now;
    }
}
