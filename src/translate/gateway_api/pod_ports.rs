//! With `--gateway-services`: the pod port of every listener port of our Gateways, from the
//! snapshot (the Gateways, the ports their Services record, the ports that are not free) through
//! [`gateway_ports::assign`](crate::translate::gateway_ports::assign).

use crate::gwapi::Gateway;
use crate::source::Snapshot;
use crate::translate::Options;
use crate::translate::gateway_ports::{self, GatewayPorts, PortKey, Wanted};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};

/// Listener port -> pod port, per Gateway.
pub(crate) type PodPorts = BTreeMap<PortKey, u16>;

fn key_of(gw: &Gateway, port: u16) -> PortKey {
    PortKey {
        namespace: gw.metadata.namespace.clone().unwrap_or_default(),
        name: gw.metadata.name.clone().unwrap_or_default(),
        port,
    }
}

/// The ports the Services of `gateways` record: `port` -> numeric `targetPort` of each Service
/// that wsgate manages for that Gateway. Other Services are no record.
fn recorded(snapshot: &Snapshot, gateways: &[&Gateway]) -> Vec<(PortKey, u16)> {
    let mut out = Vec::new();
    for gw in gateways {
        let (ns, name) = (
            gw.metadata.namespace.as_deref().unwrap_or_default(),
            gw.metadata.name.as_deref().unwrap_or_default(),
        );
        let managed = snapshot
            .gateway_api
            .gateway_services
            .iter()
            .find(|s| gateway_ports::is_managed(s, ns, name));
        let ports = managed
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.ports.as_ref());
        for p in ports.into_iter().flatten() {
            let (Ok(listener), Some(IntOrString::Int(target))) =
                (u16::try_from(p.port), p.target_port.as_ref())
            else {
                continue;
            };
            if let Ok(target) = u16::try_from(*target) {
                out.push((key_of(gw, listener), target));
            }
        }
    }
    out
}

/// The pod port of every listener port of `gateways`.
pub(crate) fn assign(
    snapshot: &Snapshot,
    options: &Options,
    settings: &GatewayPorts,
    gateways: &[&Gateway],
) -> PodPorts {
    let mut wanted = Vec::new();
    for gw in gateways {
        let created = gw
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string());
        let ports: BTreeSet<u16> = gw
            .spec
            .listeners
            .iter()
            .map(|l| l.port)
            .filter(|p| *p != 0)
            .collect();
        wanted.extend(ports.into_iter().map(|p| Wanted {
            key: key_of(gw, p),
            created: created.clone(),
        }));
    }
    // Ports wsgate binds for other reasons: the Ingress listeners, the admin port, and the
    // listeners of wsgate.dev Gateways (their port is the port bound).
    let mut reserved: BTreeSet<u16> = settings.reserved.iter().copied().collect();
    reserved.extend([options.http_port, options.https_port]);
    reserved.extend(
        snapshot
            .gateways
            .iter()
            .flat_map(|g| g.spec.listeners.iter().map(|l| l.port)),
    );
    gateway_ports::assign(
        &wanted,
        &recorded(snapshot, gateways),
        settings.range,
        &reserved,
    )
}
