//! In-memory backend: the embedded default and the reference the other
//! backends are tested against. One lock per store; writes check unique
//! indexes and versions under it, so they are atomic like the others.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::Value;

use super::{
    Backend, Bound, CollectionSpec, PlannedQuery, RawDocument, Result, StoreError, compare_values,
    lookup,
};

#[derive(Debug, Default)]
pub struct MemoryBackend {
    collections: Mutex<HashMap<String, Coll>>,
}

/// One collection: documents by id, and for each unique index the id
/// holding each value (so uniqueness checks are O(1)).
#[derive(Debug, Default)]
struct Coll {
    docs: BTreeMap<String, (u64, Value)>,
    unique: HashMap<String, HashMap<String, String>>,
}

impl Coll {
    fn unique_keys<'a>(
        spec: &'a CollectionSpec,
        body: &'a Value,
    ) -> impl Iterator<Item = (&'a str, String)> + 'a {
        spec.indexes
            .iter()
            .filter(|i| i.unique)
            .filter_map(move |index| {
                lookup(body, &index.field)
                    .filter(|v| !v.is_null())
                    .map(|v| (index.field.as_str(), v.to_string()))
            })
    }

    /// The unique index `body` would collide on (ignoring document `id` itself).
    fn violation(&self, spec: &CollectionSpec, id: &str, body: &Value) -> Option<String> {
        Self::unique_keys(spec, body).find_map(|(field, key)| {
            match self.unique.get(field).and_then(|m| m.get(&key)) {
                Some(holder) if holder != id => Some(field.to_string()),
                _ => None,
            }
        })
    }

    fn put(&mut self, spec: &CollectionSpec, id: &str, version: u64, body: Value) {
        self.remove(spec, id);
        for (field, key) in Self::unique_keys(spec, &body) {
            self.unique
                .entry(field.to_string())
                .or_default()
                .insert(key, id.to_string());
        }
        self.docs.insert(id.to_string(), (version, body));
    }

    fn remove(&mut self, spec: &CollectionSpec, id: &str) {
        if let Some((_, old)) = self.docs.remove(id) {
            for (field, key) in Self::unique_keys(spec, &old) {
                if let Some(m) = self.unique.get_mut(field) {
                    m.remove(&key);
                }
            }
        }
    }
}

impl MemoryBackend {
    pub fn new() -> Self {
        Self::default()
    }
}

fn matches(query: &PlannedQuery, doc: &Value) -> bool {
    let field_eq = |field: &str, v: &Value| lookup(doc, field) == Some(v);
    if !query
        .filters
        .iter()
        .all(|(index, v)| field_eq(&index.field, v))
    {
        return false;
    }
    if let Some((index, lower, upper)) = &query.range {
        let Some(value) = lookup(doc, &index.field).filter(|v| !v.is_null()) else {
            return false;
        };
        let ok_lower = match lower {
            None => true,
            Some(Bound::Inclusive(b)) => compare_values(value, b).is_ge(),
            Some(Bound::Exclusive(b)) => compare_values(value, b).is_gt(),
        };
        let ok_upper = match upper {
            None => true,
            Some(Bound::Inclusive(b)) => compare_values(value, b).is_le(),
            Some(Bound::Exclusive(b)) => compare_values(value, b).is_lt(),
        };
        if !(ok_lower && ok_upper) {
            return false;
        }
    }
    if let Some((field, needle)) = &query.text {
        let Some(Value::String(text)) = lookup(doc, field) else {
            return false;
        };
        if !text.to_lowercase().contains(&needle.to_lowercase()) {
            return false;
        }
    }
    true
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    async fn ensure_collection(&self, spec: &CollectionSpec) -> Result<()> {
        self.collections
            .lock()
            .expect("store lock")
            .entry(spec.name.clone())
            .or_default();
        Ok(())
    }

    async fn insert(&self, spec: &CollectionSpec, id: &str, body: &Value) -> Result<()> {
        let mut all = self.collections.lock().expect("store lock");
        let coll = all.entry(spec.name.clone()).or_default();
        if coll.docs.contains_key(id) {
            return Err(StoreError::AlreadyExists { index: "id".into() });
        }
        if let Some(index) = coll.violation(spec, id, body) {
            return Err(StoreError::AlreadyExists { index });
        }
        coll.put(spec, id, 1, body.clone());
        Ok(())
    }

    async fn get(&self, spec: &CollectionSpec, id: &str) -> Result<Option<RawDocument>> {
        let all = self.collections.lock().expect("store lock");
        Ok(all
            .get(&spec.name)
            .and_then(|coll| coll.docs.get(id))
            .map(|(version, body)| RawDocument {
                id: id.to_string(),
                version: *version,
                body: body.clone(),
            }))
    }

    async fn replace(
        &self,
        spec: &CollectionSpec,
        id: &str,
        expected: u64,
        body: &Value,
    ) -> Result<()> {
        let mut all = self.collections.lock().expect("store lock");
        let coll = all.entry(spec.name.clone()).or_default();
        match coll.docs.get(id) {
            None => return Err(StoreError::NotFound),
            Some((version, _)) if *version != expected => return Err(StoreError::VersionConflict),
            Some(_) => {}
        }
        if let Some(index) = coll.violation(spec, id, body) {
            return Err(StoreError::AlreadyExists { index });
        }
        coll.put(spec, id, expected + 1, body.clone());
        Ok(())
    }

    async fn delete(&self, spec: &CollectionSpec, id: &str, expected: Option<u64>) -> Result<()> {
        let mut all = self.collections.lock().expect("store lock");
        let coll = all.entry(spec.name.clone()).or_default();
        match (coll.docs.get(id), expected) {
            (None, _) => Err(StoreError::NotFound),
            (Some((version, _)), Some(expected)) if *version != expected => {
                Err(StoreError::VersionConflict)
            }
            _ => {
                coll.remove(spec, id);
                Ok(())
            }
        }
    }

    async fn find(&self, spec: &CollectionSpec, query: &PlannedQuery) -> Result<Vec<RawDocument>> {
        let all = self.collections.lock().expect("store lock");
        let Some(coll) = all.get(&spec.name) else {
            return Ok(Vec::new());
        };
        let mut hits: Vec<RawDocument> = coll
            .docs
            .iter()
            .filter(|(_, (_, body))| matches(query, body))
            .map(|(id, (version, body))| RawDocument {
                id: id.clone(),
                version: *version,
                body: body.clone(),
            })
            .collect();
        drop(all);
        let key = |d: &RawDocument| (query.sort_key(d), d.id.clone());
        let order = |a: &(Value, String), b: &(Value, String)| {
            compare_values(&a.0, &b.0).then_with(|| a.1.cmp(&b.1))
        };
        hits.sort_by(|a, b| {
            let o = order(&key(a), &key(b));
            if query.descending { o.reverse() } else { o }
        });
        if let Some(after) = &query.after {
            hits.retain(|d| {
                let o = order(&key(d), after);
                if query.descending {
                    o.is_lt()
                } else {
                    o.is_gt()
                }
            });
        }
        hits.truncate(query.limit + 1);
        Ok(hits)
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
