//! `translate()`: a pure function from a [`Snapshot`] to a routing table, statuses and diagnostics.
//!
//! No I/O and no clock. Bad input becomes a diagnostic and is left out; it never stops the rest.

mod affinity;
mod annotations;
mod backends;
mod builder;
pub mod conditions;
mod diagnostics;
mod firewall;
mod gateway;
pub mod gateway_api;
pub mod gateway_ports;
mod ingress;
mod settings;
mod text;
pub mod tls;

pub use annotations::ANNOTATION_PREFIX;
pub use conditions::{Condition, ConditionStatus};
pub use diagnostics::{Diagnostic, ObjectRef, Severity};
pub use gateway::GatewayConditions;
pub use ingress::is_ours;

use crate::ir::RouteTable;
use crate::source::Snapshot;

/// The IngressClass controller name wsgate answers to.
pub const CONTROLLER_NAME: &str = "wsgate.dev/ingress-controller";

/// Settings of translation that come from the command line.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--ingress-class`.
    pub ingress_class: String,
    /// `--http-port`: where Ingress routes are served.
    pub http_port: u16,
    /// `--https-port`: where Ingress TLS hosts are served.
    pub https_port: u16,
    /// `--gateway-class`: serve only this GatewayClass (of controller
    /// `wsgate.dev/gateway-controller`); `None` = every class of that controller.
    pub gateway_class: Option<String>,
    /// `--gateway-services`: each Gateway API Gateway has its own Service, and its listener
    /// ports are served on per-Gateway ports of the pods ([`gateway_ports`]); `None` = a
    /// listener port is the port wsgate binds (file mode, and controller mode without it).
    pub gateway_ports: Option<gateway_ports::GatewayPorts>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ingress_class: "wsgate".into(),
            http_port: 8080,
            https_port: 8443,
            gateway_class: None,
            gateway_ports: None,
        }
    }
}

/// What translation produced.
#[derive(Clone, Debug, Default)]
pub struct Translated {
    /// The routing table to serve.
    pub table: RouteTable,
    /// Conditions per Gateway object.
    pub gateway_statuses: Vec<(ObjectRef, GatewayConditions)>,
    /// Wanted status of the Gateway API objects.
    pub gateway_api: gateway_api::GatewayApiReport,
    /// Every error and warning, naming object and field.
    pub diagnostics: Vec<Diagnostic>,
}

impl Translated {
    /// Whether any diagnostic is an error (the configuration should not be applied in file mode).
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Translates every object of the snapshot into one routing table.
pub fn translate(snapshot: &Snapshot, options: &Options) -> Translated {
    let mut diags = diagnostics::Diagnostics::default();
    let index = backends::Index::new(snapshot);
    let mut builder = builder::TableBuilder::new(options.http_port);
    let paths = ingress::path_count(snapshot);
    let rules: usize = snapshot
        .gateway_api
        .http_routes
        .iter()
        .map(|r| r.spec.rules.len().max(1))
        .sum();
    builder.reserve(paths + rules, paths + rules);
    ingress::translate_all(snapshot, options, &index, &mut builder, &mut diags);
    let gateway_statuses = gateway::translate_all(snapshot, &index, &mut builder, &mut diags);
    let gateway_api =
        gateway_api::translate_all(snapshot, options, &index, &mut builder, &mut diags);
    let table = builder.build(&mut diags);
    Translated {
        table,
        gateway_statuses,
        gateway_api,
        diagnostics: diags.into_vec(),
    }
}
