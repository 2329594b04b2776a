//! Assembles routes from every object into one table: merges listeners, orders virtual hosts and
//! routes by precedence, and resolves conflicts (the oldest object wins; the others are warned).

use super::diagnostics::{Diagnostics, ObjectRef};
use crate::ir::{
    Backend, Firewall, HostMatch, Listener, ListenerProtocol, PathMatch, RequestConditions, Route,
    RouteFilters, RouteTable, TlsCertificate, VirtualHost,
};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The object routes come from: its age and identity. One per object, shared by its routes.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Source {
    /// `creationTimestamp` as RFC 3339 text (`None` sorts first: file objects have none).
    pub created: Option<String>,
    /// The object.
    pub object: ObjectRef,
}

impl Source {
    pub(crate) fn new(created: Option<String>, object: ObjectRef) -> Arc<Self> {
        Arc::new(Self { created, object })
    }
}

/// Which object (and where in it) a route came from, ordered so that the oldest object wins a
/// conflict: by `created`, then kind/namespace/name, then field.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Origin {
    /// The object.
    pub source: Arc<Source>,
    /// Where in the object (for the conflict warning).
    pub field: String,
}

/// Where a route sends requests and which firewall guards it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// Backend index from [`TableBuilder::backend`].
    pub backend: usize,
    /// Firewall index from [`TableBuilder::firewall`].
    pub firewall: Option<usize>,
    /// See [`crate::ir::Route::forward_original_path`].
    pub forward_original_path: bool,
}

/// What a route may carry besides its path (Gateway API matches, filters, weighted backends).
#[derive(Clone, Debug, Default)]
pub(crate) struct RouteExtras {
    /// Header, query and method conditions.
    pub conditions: Option<Arc<RequestConditions>>,
    /// Filters.
    pub filters: Option<Arc<RouteFilters>>,
    /// Weighted backends `(index, weight)`.
    pub split: Option<Arc<[(usize, u32)]>>,
}

struct Candidate {
    port: u16,
    host: HostMatch,
    path: PathMatch,
    id: Arc<str>,
    target: Target,
    origin: Origin,
    extras: RouteExtras,
}

struct DefaultCandidate {
    port: u16,
    id: Arc<str>,
    target: Target,
    origin: Origin,
}

/// Collects routes; [`TableBuilder::build`] makes the table.
pub(crate) struct TableBuilder {
    base_port: u16,
    listeners: BTreeMap<u16, ListenerProtocol>,
    certificates: BTreeMap<u16, Vec<TlsCertificate>>,
    backends: Vec<Backend>,
    backend_index: HashMap<Arc<str>, Vec<usize>, foldhash::fast::RandomState>,
    firewalls: Vec<Firewall>,
    candidates: Vec<Candidate>,
    defaults: Vec<DefaultCandidate>,
}

impl TableBuilder {
    /// A builder whose table always has a listener on `base_port` (the Ingress HTTP port).
    pub(crate) fn new(base_port: u16) -> Self {
        let mut listeners = BTreeMap::new();
        listeners.insert(base_port, ListenerProtocol::Http);
        Self {
            base_port,
            listeners,
            backends: Vec::new(),
            backend_index: HashMap::default(),
            firewalls: Vec::new(),
            certificates: BTreeMap::new(),
            candidates: Vec::new(),
            defaults: Vec::new(),
        }
    }

    /// Room for about `routes` routes and `backends` backends: with 10,000 Ingresses, growing
    /// these vectors by doubling copied megabytes of candidates on every translation.
    pub(crate) fn reserve(&mut self, routes: usize, backends: usize) {
        self.candidates.reserve(routes);
        self.backends.reserve(backends);
        self.backend_index.reserve(backends);
    }

    /// Declares a listener port; a port can carry only one protocol.
    pub(crate) fn listener(&mut self, port: u16, protocol: ListenerProtocol) -> Result<(), String> {
        match self.listeners.get(&port) {
            Some(p) if *p != protocol => Err(format!(
                "port {port} is already used with protocol {p:?} (default HTTP port {} is HTTP)",
                self.base_port
            )),
            _ => {
                self.listeners.insert(port, protocol);
                Ok(())
            }
        }
    }

    /// Adds a certificate to an HTTPS listener port.
    pub(crate) fn certificate(&mut self, port: u16, cert: TlsCertificate) {
        let certs = self.certificates.entry(port).or_default();
        if !certs.contains(&cert) {
            certs.push(cert);
        }
    }

    /// Adds (or reuses an identical) backend and returns its index.
    pub(crate) fn backend(&mut self, backend: Backend) -> usize {
        let same = self.backend_index.entry(backend.id.clone()).or_default();
        if let Some(&i) = same.iter().find(|&&i| self.backends[i] == backend) {
            return i;
        }
        self.backends.push(backend);
        same.push(self.backends.len() - 1);
        self.backends.len() - 1
    }

    /// Adds (or reuses an identical) firewall and returns its index.
    pub(crate) fn firewall(&mut self, firewall: Firewall) -> usize {
        if let Some(i) = self.firewalls.iter().position(|f| *f == firewall) {
            return i;
        }
        self.firewalls.push(firewall);
        self.firewalls.len() - 1
    }

    /// Adds a host/path route on a declared listener port.
    pub(crate) fn route(
        &mut self,
        port: u16,
        host: HostMatch,
        path: PathMatch,
        id: Arc<str>,
        target: Target,
        origin: Origin,
    ) {
        self.route_with(port, host, path, id, target, origin, RouteExtras::default());
    }

    /// Adds a route with conditions, filters or a weighted split.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn route_with(
        &mut self,
        port: u16,
        host: HostMatch,
        path: PathMatch,
        id: Arc<str>,
        target: Target,
        origin: Origin,
        extras: RouteExtras,
    ) {
        self.candidates.push(Candidate {
            port,
            host,
            path,
            id,
            target,
            origin,
            extras,
        });
    }

    /// Adds a catch-all route for a port (Ingress `defaultBackend`).
    pub(crate) fn default_route(
        &mut self,
        port: u16,
        id: Arc<str>,
        target: Target,
        origin: Origin,
    ) {
        self.defaults.push(DefaultCandidate {
            port,
            id,
            target,
            origin,
        });
    }

    /// Resolves conflicts and orders everything by precedence. Kept whole (about 100 lines):
    /// its passes (canonical backend order, first rule per port/host/path/conditions wins by
    /// age, first default backend per port wins, then listeners assembled from what is left)
    /// consume the same vectors in this order.
    pub(crate) fn build(self, diags: &mut Diagnostics) -> RouteTable {
        let Self {
            listeners,
            mut certificates,
            backends,
            firewalls,
            candidates,
            mut defaults,
            ..
        } = self;
        // Backends and firewalls in an order independent of the input's, decided first so that
        // each route gets its final indices as it is made (no second pass over 20,000 routes).
        let (backends, b_index) = canonical(backends, |b| &b.id);
        let (firewalls, f_index) = canonical(firewalls, |f| &f.id);

        // Per (port, host, path, conditions) the oldest object wins (equal timestamps fall back
        // to kind/namespace/name, then field), so the result never depends on input order.
        // Origins are compared only where two candidates meet, not sorted as a whole: with
        // 10,000 Ingresses the full sort by origin was a tenth of a translation.
        let mut keep = vec![false; candidates.len()];
        {
            type Key<'c> = (
                u16,
                &'c HostMatch,
                &'c PathMatch,
                Option<&'c RequestConditions>,
            );
            fn key(c: &Candidate) -> Key<'_> {
                (c.port, &c.host, &c.path, c.extras.conditions.as_deref())
            }
            // A regex's cache is interior mutability, but equality and hashing use only its source.
            #[allow(clippy::mutable_key_type)]
            let mut winners: HashMap<Key<'_>, usize, foldhash::fast::RandomState> =
                HashMap::with_capacity_and_hasher(candidates.len(), Default::default());
            let mut losers = Vec::new();
            for (i, c) in candidates.iter().enumerate() {
                match winners.entry(key(c)) {
                    Entry::Vacant(v) => {
                        v.insert(i);
                    }
                    Entry::Occupied(mut w) => {
                        let held = *w.get();
                        if c.origin < candidates[held].origin {
                            w.insert(i);
                            losers.push(held);
                        } else {
                            losers.push(i);
                        }
                    }
                }
            }
            // Warnings in the losers' age order, each naming the final winner.
            losers.sort_by(|&a, &b| candidates[a].origin.cmp(&candidates[b].origin));
            for i in losers {
                let c = &candidates[i];
                let Some(&w) = winners.get(&key(c)) else {
                    continue;
                };
                let winner = &candidates[w].origin;
                if winner.source.object != c.origin.source.object || winner.field != c.origin.field
                {
                    diags.warn(
                        &c.origin.source.object,
                        &c.origin.field,
                        format!(
                            "host {} path {} on port {} is already routed by {} ({}); this rule is ignored",
                            c.host,
                            c.path.path(),
                            c.port,
                            winner.source.object,
                            winner.field
                        ),
                    );
                }
            }
            for &i in winners.values() {
                keep[i] = true;
            }
        }
        let renumber = |backend: usize, firewall: Option<usize>| {
            (b_index[backend], firewall.map(|f| f_index[f]))
        };
        let mut hosts: BTreeMap<u16, BTreeMap<HostMatch, Vec<(Route, Origin)>>> = BTreeMap::new();
        for (c, _) in candidates.into_iter().zip(keep).filter(|(_, k)| *k) {
            let (backend, firewall) = renumber(c.target.backend, c.target.firewall);
            let split = c
                .extras
                .split
                .map(|s| s.iter().map(|(b, w)| (b_index[*b], *w)).collect());
            let route = Route {
                conditions: c.extras.conditions,
                filters: c.extras.filters,
                split,
                forward_original_path: c.target.forward_original_path,
                ..Route::new(c.id, c.path, backend, firewall)
            };
            hosts
                .entry(c.port)
                .or_default()
                .entry(c.host)
                .or_default()
                .push((route, c.origin));
        }

        let mut default_routes: HashMap<u16, (Route, Origin)> = HashMap::new();
        defaults.sort_by(|a, b| a.origin.cmp(&b.origin));
        for d in defaults {
            if let Some((_, winner)) = default_routes.get(&d.port) {
                diags.warn(
                    &d.origin.source.object,
                    &d.origin.field,
                    format!(
                        "port {} already has a default backend from {}; this one is ignored",
                        d.port, winner.source.object
                    ),
                );
                continue;
            }
            let (backend, firewall) = renumber(d.target.backend, d.target.firewall);
            let route = Route {
                forward_original_path: d.target.forward_original_path,
                ..Route::new(d.id, PathMatch::Prefix("/".into()), backend, firewall)
            };
            default_routes.insert(d.port, (route, d.origin));
        }

        let listeners: Vec<Listener> = listeners
            .into_iter()
            .map(|(port, protocol)| {
                let mut vhosts: Vec<VirtualHost> = hosts
                    .remove(&port)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(host, mut routes)| {
                        // By precedence; the oldest object first among equal-precedence routes.
                        routes.sort_by(|(a, oa), (b, ob)| {
                            a.precedence().cmp(&b.precedence()).then_with(|| oa.cmp(ob))
                        });
                        VirtualHost {
                            host,
                            routes: routes.into_iter().map(|(r, _)| r).collect(),
                        }
                    })
                    .collect();
                vhosts.sort_by_key(|vh| vh.host.specificity());
                let mut certificates = certificates.remove(&port).unwrap_or_default();
                certificates.sort_by(|a, b| (&a.source, &a.hosts).cmp(&(&b.source, &b.hosts)));
                Listener {
                    port,
                    protocol,
                    virtual_hosts: vhosts.into(),
                    default_route: default_routes.remove(&port).map(|(r, _)| r),
                    certificates: certificates.into(),
                }
            })
            .collect();
        RouteTable {
            listeners: listeners.into(),
            backends: backends.into(),
            firewalls: firewalls.into(),
        }
    }
}

/// Sorts items by a key and returns them with the map from old to new index. Items are ordered
/// by identity, then by content (`Debug` text) among items of equal identity; the content text is
/// made only for such ties (rare: the same backend id with different settings), not for all
/// 10,000 backends of a large input.
fn canonical<T: std::fmt::Debug>(items: Vec<T>, id: impl Fn(&T) -> &str) -> (Vec<T>, Vec<usize>) {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| id(&items[a]).cmp(id(&items[b])));
    let mut i = 0;
    while i < order.len() {
        let same = order[i..]
            .iter()
            .take_while(|&&k| id(&items[k]) == id(&items[order[i]]))
            .count();
        if same > 1 {
            let run = &mut order[i..i + same];
            let text: HashMap<usize, String> = run
                .iter()
                .map(|&k| (k, format!("{:?}", items[k])))
                .collect();
            run.sort_by(|a, b| text[a].cmp(&text[b]));
        }
        i += same;
    }
    let mut new_index = vec![0; items.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    let sorted = order.iter().filter_map(|&old| slots[old].take()).collect();
    (sorted, new_index)
}
