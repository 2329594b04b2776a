//! Which port of the wsgate pods serves each Gateway API listener port when every Gateway has
//! its own Service (`--gateway-services`): a pure function of the Gateways, the Services that
//! already record a port, and the range, so every replica computes the same ports.
//!
//! The properties, in the order they are applied:
//!
//! 1. **A recorded port stays.** A listener port whose Service (managed by wsgate, of that
//!    Gateway) already maps it to a `targetPort` inside the range keeps that port, whatever
//!    else changes. The Service is therefore the record every replica reads.
//! 2. **Older Gateways first.** Listener ports without a record are placed in order of their
//!    Gateway's `creationTimestamp` (then namespace, name, port), each at its home port
//!    `first + sha1("namespace/name/port") mod size`, else the next free port after it
//!    (wrapping). A new Gateway comes last, so it can never take a port an existing one holds.
//! 3. **Never a reserved port** (the Ingress ports, the admin port, ports that wsgate.dev
//!    Gateways bind) and never one port for two keys.
//!
//! So a port changes only when its record is lost (the Service deleted by hand) and, in that
//! case, only if a collision was resolved differently before.

use k8s_openapi::api::core::v1::Service;
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};

/// Label on every Service wsgate creates for a Gateway: the Gateway's name. A Service without
/// the labels is never changed or deleted by wsgate.
pub const GATEWAY_LABEL: &str = "wsgate.dev/gateway";

/// Label on those Services: the Gateway's namespace.
pub const GATEWAY_NAMESPACE_LABEL: &str = "wsgate.dev/gateway-namespace";

/// `app.kubernetes.io/managed-by` value on those Services.
pub const MANAGED_BY: &str = "wsgate";

/// The name of Gateway `namespace/name`'s Service (in wsgate's own namespace, since a Service
/// selects pods of its namespace only): `gw-NAME-NAMESPACE-HASH`, cut to a DNS-1035 label (63
/// characters, letters, digits and `-`); the 8 hex digits of `sha1("namespace/name")` keep
/// Gateways apart whose names would read alike (`a-b`/`c` and `a`/`b-c`) or were cut.
pub fn service_name(namespace: &str, gateway: &str) -> String {
    let digest = Sha1::digest(format!("{namespace}/{gateway}").as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let readable: String = format!("gw-{gateway}-{namespace}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63 - 9)
        .collect();
    format!("{}-{hash}", readable.trim_end_matches('-'))
}

/// The standard label naming the manager of an object.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Whether `svc` is the Service wsgate manages for Gateway `namespace/name` (its name and
/// labels say so).
pub fn is_managed(svc: &Service, namespace: &str, name: &str) -> bool {
    let label = |k: &str| {
        svc.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(k))
            .map(String::as_str)
    };
    svc.metadata.name.as_deref() == Some(service_name(namespace, name).as_str())
        && label(MANAGED_BY_LABEL) == Some(MANAGED_BY)
        && label(GATEWAY_LABEL) == Some(name)
        && label(GATEWAY_NAMESPACE_LABEL) == Some(namespace)
}

/// `--gateway-port-range`: the ports of the wsgate pods Gateway listeners are mapped onto.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    /// First port (inclusive).
    pub first: u16,
    /// Last port (inclusive).
    pub last: u16,
}

/// Why a `--gateway-port-range` value was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?}: expected FIRST-LAST, two ports 1-65535 with FIRST <= LAST")]
pub struct RangeError(pub String);

impl std::str::FromStr for PortRange {
    type Err = RangeError;
    fn from_str(s: &str) -> Result<Self, RangeError> {
        let bad = || RangeError(s.to_string());
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(bad());
        }
        Ok(Self { first, last })
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl PortRange {
    /// The default, `20000-29999`: unprivileged, below Linux's ephemeral ports (32768+) and the
    /// NodePort range (30000-32767), away from the chart's 8080/8443/9090.
    pub const DEFAULT: PortRange = PortRange {
        first: 20000,
        last: 29999,
    };

    fn size(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    fn contains(&self, p: u16) -> bool {
        (self.first..=self.last).contains(&p)
    }
}

/// Settings of the per-Gateway ports (translation options in controller mode with
/// `--gateway-services`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayPorts {
    /// Where the ports come from.
    pub range: PortRange,
    /// Ports never handed out besides the Ingress ports (the admin port).
    pub reserved: Vec<u16>,
}

/// One listener port of one Gateway.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    /// The Gateway's namespace.
    pub namespace: String,
    /// The Gateway's name.
    pub name: String,
    /// The listener port (what clients connect to on the Gateway's address).
    pub port: u16,
}

/// A listener port to place, with its Gateway's `creationTimestamp` (RFC 3339, so it sorts as
/// text; `None` sorts first).
#[derive(Clone, Debug)]
pub struct Wanted {
    /// The key.
    pub key: PortKey,
    /// Its Gateway's creation time.
    pub created: Option<String>,
}

fn home(key: &PortKey, range: PortRange) -> u32 {
    let digest = Sha1::digest(format!("{}/{}/{}", key.namespace, key.name, key.port).as_bytes());
    let mut first8 = [0u8; 8];
    first8.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first8) % u64::from(range.size())) as u32
}

/// The pod port of every wanted key (see the module's properties). A key is missing from the
/// result only when the range has no free port left.
pub fn assign(
    wanted: &[Wanted],
    recorded: &[(PortKey, u16)],
    range: PortRange,
    reserved: &BTreeSet<u16>,
) -> BTreeMap<PortKey, u16> {
    let mut taken: BTreeSet<u16> = reserved.clone();
    let mut out = BTreeMap::new();
    let wanted_keys: BTreeSet<&PortKey> = wanted.iter().map(|w| &w.key).collect();
    let mut records: Vec<&(PortKey, u16)> = recorded
        .iter()
        .filter(|(k, p)| wanted_keys.contains(k) && range.contains(*p))
        .collect();
    records.sort();
    for (k, p) in records {
        if !out.contains_key(k) && taken.insert(*p) {
            out.insert(k.clone(), *p);
        }
    }
    let mut rest: Vec<&Wanted> = wanted
        .iter()
        .filter(|w| !out.contains_key(&w.key))
        .collect();
    rest.sort_by(|a, b| (&a.created, &a.key).cmp(&(&b.created, &b.key)));
    for w in rest {
        if out.contains_key(&w.key) {
            continue; // the same key twice
        }
        let start = home(&w.key, range);
        let free = (0..range.size())
            .map(|i| range.first + ((start + i) % range.size()) as u16)
            .find(|p| !taken.contains(p));
        if let Some(p) = free {
            taken.insert(p);
            out.insert(w.key.clone(), p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ns: &str, name: &str, port: u16) -> PortKey {
        PortKey {
            namespace: ns.into(),
            name: name.into(),
            port,
        }
    }

    fn want(ns: &str, name: &str, port: u16, created: &str) -> Wanted {
        Wanted {
            key: key(ns, name, port),
            created: Some(created.into()),
        }
    }

    const SMALL: PortRange = PortRange {
        first: 100,
        last: 103,
    };

    #[test]
    fn ranges_parse_and_refuse_nonsense() {
        assert_eq!("20000-29999".parse::<PortRange>(), Ok(PortRange::DEFAULT));
        assert_eq!(PortRange::DEFAULT.to_string(), "20000-29999");
        for bad in ["", "1", "0-10", "10-9", "a-b", "1-70000", "-5", "5-"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
        assert_eq!(
            "7-7".parse::<PortRange>(),
            Ok(PortRange { first: 7, last: 7 })
        );
    }

    #[test]
    fn service_names_are_dns_1035_labels_and_tell_gateways_apart() {
        let name = service_name("apps", "web");
        assert!(name.starts_with("gw-web-apps-"), "{name}");
        assert_eq!(name, service_name("apps", "web"));
        assert_ne!(service_name("a-b", "c"), service_name("a", "b-c"));
        for (ns, gw) in [("apps", "web.v2"), ("x", &"a".repeat(253)), ("1", "2")] {
            let n = service_name(ns, gw);
            assert!(crate::names::is_dns_label(&n), "{n}");
            assert!(n.starts_with(|c: char| c.is_ascii_lowercase()), "{n}");
        }
        assert_ne!(
            service_name("x", &"a".repeat(100)),
            service_name("x", &"a".repeat(101))
        );
    }

    #[test]
    fn deterministic_whatever_the_input_order() {
        let mut w = vec![
            want("a", "one", 80, "2026-01-01T00:00:00Z"),
            want("a", "two", 80, "2026-01-02T00:00:00Z"),
            want("b", "one", 443, "2026-01-03T00:00:00Z"),
        ];
        let first = assign(&w, &[], PortRange::DEFAULT, &BTreeSet::new());
        assert_eq!(first.len(), 3);
        w.reverse();
        assert_eq!(assign(&w, &[], PortRange::DEFAULT, &BTreeSet::new()), first);
        // Every port in the range, all distinct.
        let ports: BTreeSet<u16> = first.values().copied().collect();
        assert_eq!(ports.len(), 3);
        assert!(ports.iter().all(|p| PortRange::DEFAULT.contains(*p)));
    }

    #[test]
    fn stable_when_other_gateways_come_and_go() {
        // Many Gateways in a small range, so collisions certainly happen.
        let range = PortRange {
            first: 1000,
            last: 1019,
        };
        let all: Vec<Wanted> = (0..15)
            .map(|i| {
                want(
                    "ns",
                    &format!("gw{i}"),
                    80,
                    &format!("2026-01-{:02}T00:00:00Z", i + 1),
                )
            })
            .collect();
        let none = BTreeSet::new();
        for n in 1..all.len() {
            // Adding a newer Gateway never moves an older one.
            let before = assign(&all[..n], &[], range, &none);
            let after = assign(&all[..=n], &[], range, &none);
            for (k, p) in &before {
                assert_eq!(after.get(k), Some(p), "adding gw{n} moved {k:?}");
            }
        }
        // Removing any Gateway moves nobody once the ports are recorded (in their Services).
        let full = assign(&all, &[], range, &none);
        let recorded: Vec<(PortKey, u16)> = full.iter().map(|(k, p)| (k.clone(), *p)).collect();
        for gone in 0..all.len() {
            let rest: Vec<Wanted> = all
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != gone)
                .map(|(_, w)| w.clone())
                .collect();
            let after = assign(&rest, &recorded, range, &none);
            for w in &rest {
                assert_eq!(after.get(&w.key), full.get(&w.key), "removing gw{gone}");
            }
        }
    }

    #[test]
    fn collisions_probe_to_the_next_free_port_and_skip_reserved() {
        // Range of one port: the first (oldest) key gets it, the other none.
        let one = PortRange {
            first: 50,
            last: 50,
        };
        let w = [
            want("ns", "new", 80, "2026-02-01T00:00:00Z"),
            want("ns", "old", 80, "2026-01-01T00:00:00Z"),
        ];
        let got = assign(&w, &[], one, &BTreeSet::new());
        assert_eq!(got.get(&key("ns", "old", 80)), Some(&50));
        assert_eq!(got.get(&key("ns", "new", 80)), None);
        // Four keys in four ports with two reserved: two placed, none on a reserved port.
        let reserved: BTreeSet<u16> = [101, 102].into();
        let w: Vec<Wanted> = (0..4)
            .map(|i| {
                want(
                    "ns",
                    &format!("g{i}"),
                    80,
                    &format!("2026-01-0{}T00:00:00Z", i + 1),
                )
            })
            .collect();
        let got = assign(&w, &[], SMALL, &reserved);
        assert_eq!(got.len(), 2);
        let ports: BTreeSet<u16> = got.values().copied().collect();
        assert_eq!(ports, [100, 103].into());
        // A key whose home port is taken lands on the next one (wrapping).
        let a = want("ns", "a", 80, "2026-01-01T00:00:00Z");
        let home_a = SMALL.first + home(&a.key, SMALL) as u16;
        let blocked: BTreeSet<u16> = [home_a].into();
        let got = assign(std::slice::from_ref(&a), &[], SMALL, &blocked);
        let next = if home_a == SMALL.last {
            SMALL.first
        } else {
            home_a + 1
        };
        assert_eq!(got.get(&a.key), Some(&next));
    }

    #[test]
    fn records_win_unless_out_of_range_reserved_or_taken() {
        let w = [
            want("ns", "a", 80, "2026-01-01T00:00:00Z"),
            want("ns", "b", 80, "2026-01-02T00:00:00Z"),
            want("ns", "c", 80, "2026-01-03T00:00:00Z"),
        ];
        let reserved: BTreeSet<u16> = [102].into();
        let recorded = [
            (key("ns", "a", 80), 103),
            (key("ns", "b", 80), 103),    // already a's: b is placed afresh
            (key("ns", "c", 80), 102),    // reserved: ignored
            (key("ns", "gone", 80), 100), // not wanted: frees nothing, takes nothing
        ];
        let got = assign(&w, &recorded, SMALL, &reserved);
        assert_eq!(got.get(&key("ns", "a", 80)), Some(&103));
        assert_eq!(got.len(), 3);
        let ports: BTreeSet<u16> = got.values().copied().collect();
        assert_eq!(ports, [100, 101, 103].into());
        // Out of the range: placed afresh inside it.
        let got = assign(&w[..1], &[(key("ns", "a", 80), 9)], SMALL, &BTreeSet::new());
        assert!(SMALL.contains(got[&key("ns", "a", 80)]));
    }
}
