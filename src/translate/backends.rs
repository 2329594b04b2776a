//! Resolves Service ports to ready endpoints through EndpointSlices, and static addresses.

use crate::ir::Endpoint;
use crate::source::Snapshot;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// Lookup maps of one translation: keys are names from the snapshot, not from clients, and a
/// 10,000-object snapshot hashes them tens of thousands of times, so the fast hasher.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A Service and one of its ports, by their addresses in the snapshot.
type ServicePortKey = (usize, usize);

/// A Service port as an Ingress or Gateway names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PortRef {
    /// By `port` number.
    Number(i32),
    /// By port `name`.
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(n) => f.write_str(n),
        }
    }
}

/// Lookup tables over the snapshot's Services, EndpointSlices and Secrets.
pub(crate) struct Index<'a> {
    /// Secrets for TLS material.
    pub(crate) secrets: super::tls::Secrets<'a>,
    services: FastMap<(&'a str, &'a str), &'a Service>,
    slices: FastMap<(&'a str, &'a str), Vec<&'a EndpointSlice>>,
    /// Endpoints already resolved, per (Service, ServicePort) of the snapshot (by address): the
    /// paths of one Ingress, and the rules of routes, often name the same Service port.
    resolved: RefCell<FastMap<ServicePortKey, Arc<[Endpoint]>>>,
}

const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

impl<'a> Index<'a> {
    pub(crate) fn new(snapshot: &'a Snapshot) -> Self {
        let mut services =
            FastMap::with_capacity_and_hasher(snapshot.services.len(), Default::default());
        for s in &snapshot.services {
            if let (Some(ns), Some(name)) = (&s.metadata.namespace, &s.metadata.name) {
                services.insert((ns.as_str(), name.as_str()), &**s);
            }
        }
        let mut slices: FastMap<(&str, &str), Vec<&EndpointSlice>> =
            FastMap::with_capacity_and_hasher(snapshot.endpoint_slices.len(), Default::default());
        for es in &snapshot.endpoint_slices {
            let ns = es.metadata.namespace.as_deref().unwrap_or("default");
            if let Some(svc) = es
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL))
            {
                slices.entry((ns, svc.as_str())).or_default().push(es);
            }
        }
        Self {
            secrets: super::tls::Secrets::new(snapshot),
            services,
            slices,
            resolved: RefCell::default(),
        }
    }

    /// Port `port` of Service `ns/name`, if both exist.
    fn service_port(&self, ns: &str, name: &str, port: i32) -> Option<&'a ServicePort> {
        self.services
            .get(&(ns, name))?
            .spec
            .as_ref()?
            .ports
            .as_deref()?
            .iter()
            .find(|p| p.port == port)
    }

    /// The `appProtocol` of a Service port, if it has one.
    pub(crate) fn app_protocol(&self, ns: &str, name: &str, port: i32) -> Option<String> {
        self.service_port(ns, name, port)?.app_protocol.clone()
    }

    /// The name of Service `ns/name`'s port `port`, if it has one (a `sectionName` target).
    pub(crate) fn port_name(&self, ns: &str, name: &str, port: i32) -> Option<String> {
        self.service_port(ns, name, port)?.name.clone()
    }

    /// The ready endpoints of Service `ns/name` port `port`. `Err` explains what does not resolve.
    pub(crate) fn resolve(
        &self,
        ns: &str,
        name: &str,
        port: &PortRef,
    ) -> Result<Vec<Endpoint>, String> {
        self.resolve_shared(ns, name, port).map(|e| e.to_vec())
    }

    /// [`Index::resolve`], shared: each Service port is resolved once per translation.
    pub(crate) fn resolve_shared(
        &self,
        ns: &str,
        name: &str,
        port: &PortRef,
    ) -> Result<Arc<[Endpoint]>, String> {
        let svc = self
            .services
            .get(&(ns, name))
            .ok_or_else(|| format!("Service {ns}/{name} not found"))?;
        let spec = svc
            .spec
            .as_ref()
            .ok_or_else(|| format!("Service {ns}/{name} has no spec"))?;
        let ports = spec.ports.as_deref().unwrap_or_default();
        let sp = ports
            .iter()
            .find(|p| match port {
                PortRef::Number(n) => p.port == *n,
                PortRef::Name(n) => p.name.as_deref() == Some(n.as_str()),
            })
            .ok_or_else(|| format!("Service {ns}/{name} has no port {port}"))?;

        if spec.type_.as_deref() == Some("ExternalName") {
            let host = spec
                .external_name
                .as_deref()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| format!("ExternalName Service {ns}/{name} has no externalName"))?;
            return Ok(Arc::new([Endpoint {
                host: host.into(),
                port: to_port(sp.port)?,
            }]));
        }
        let key = (
            std::ptr::from_ref(*svc) as usize,
            std::ptr::from_ref(sp) as usize,
        );
        let known = self.resolved.borrow().get(&key).cloned();
        if let Some(found) = known {
            return Ok(found);
        }
        let found = self.ready_endpoints(ns, name, sp)?;
        self.resolved.borrow_mut().insert(key, found.clone());
        Ok(found)
    }

    /// The ready endpoints of Service port `sp` of `ns/name`, from its EndpointSlices.
    fn ready_endpoints(
        &self,
        ns: &str,
        name: &str,
        sp: &ServicePort,
    ) -> Result<Arc<[Endpoint]>, String> {
        let want_name = sp.name.as_deref().unwrap_or("");
        let mut out = BTreeSet::new();
        for es in self.slices.get(&(ns, name)).into_iter().flatten() {
            let Some(ep_port) = es
                .ports
                .as_deref()
                .unwrap_or_default()
                .iter()
                .find(|p| p.name.as_deref().unwrap_or("") == want_name)
                .and_then(|p| p.port)
            else {
                continue;
            };
            let port = to_port(ep_port)?;
            for ep in es.endpoints.iter().flatten() {
                // Kubernetes: a nil `ready` means ready; terminating endpoints report ready=false.
                let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                if !ready {
                    continue;
                }
                for addr in &ep.addresses {
                    out.insert((addr.clone(), port));
                }
            }
        }
        Ok(out
            .into_iter()
            .map(|(host, port)| Endpoint {
                host: Arc::from(host.as_str()),
                port,
            })
            .collect())
    }
}

fn to_port(p: i32) -> Result<u16, String> {
    u16::try_from(p)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("port {p} is out of range"))
}
