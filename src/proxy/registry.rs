//! State kept across table swaps, found by identity: a new table gets the same `Arc` as the old
//! one for every key both use, and state no table holds any more is forgotten.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Weak};

/// A map from identity to weakly held state; the tables hold the strong references.
pub(crate) struct Registry<K, V> {
    map: Mutex<HashMap<K, Weak<V>>>,
}

impl<K, V> Default for Registry<K, V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V> Registry<K, V> {
    /// The live state for `key` if `reuse` accepts it, else a new one from `make` (which then
    /// replaces the old under that key).
    pub(crate) fn get_or_make(
        &self,
        key: K,
        reuse: impl FnOnce(&V) -> bool,
        make: impl FnOnce() -> V,
    ) -> Arc<V> {
        let mut map = self.map.lock();
        if let Some(v) = map.get(&key).and_then(Weak::upgrade)
            && reuse(&v)
        {
            return v;
        }
        let v = Arc::new(make());
        map.insert(key, Arc::downgrade(&v));
        v
    }

    /// The live state for `key`, or a new one from `make`.
    pub(crate) fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> Arc<V> {
        self.get_or_make(key, |_| true, make)
    }

    /// Every state some table still holds.
    pub(crate) fn live(&self) -> Vec<Arc<V>> {
        self.map.lock().values().filter_map(Weak::upgrade).collect()
    }

    /// Forgets the keys no table holds; `gone` sees each one as it goes.
    pub(crate) fn prune(&self, mut gone: impl FnMut(&K)) {
        self.map.lock().retain(|k, w| {
            let live = w.strong_count() > 0;
            if !live {
                gone(k);
            }
            live
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_state_until_nobody_holds_it() {
        let r: Registry<&str, u32> = Registry::default();
        let a = r.get_or_insert_with("a", || 1);
        let again = r.get_or_insert_with("a", || 2);
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(r.live().len(), 1);
        drop((a, again));
        let mut forgotten = Vec::new();
        r.prune(|k| forgotten.push(*k));
        assert_eq!(forgotten, ["a"]);
        assert_eq!(*r.get_or_insert_with("a", || 3), 3);
    }

    #[test]
    fn refused_state_is_replaced() {
        let r: Registry<u8, u32> = Registry::default();
        let old = r.get_or_insert_with(1, || 10);
        let new = r.get_or_make(1, |v| *v == 11, || 11);
        assert_eq!((*old, *new), (10, 11));
        assert!(Arc::ptr_eq(&new, &r.get_or_insert_with(1, || 12)));
    }
}
