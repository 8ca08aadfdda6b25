//! Queries: what a service asks, the plan a backend runs, pages, and how
//! indexed values compare.

use serde::Serialize;
use serde_json::Value;

use super::spec::check_type;
use super::{CollectionSpec, IndexSpec, MAX_PAGE, Result, StoreError, cursor, lookup};

/// A stored document as the backends see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RawDocument {
    pub id: String,
    pub version: u64,
    pub body: Value,
}

/// A bound of a range condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Bound {
    Inclusive(Value),
    Exclusive(Value),
}

/// `lower <? field <? upper` on one indexed field.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Range {
    pub field: String,
    pub lower: Option<Bound>,
    pub upper: Option<Bound>,
}

/// A query on one collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Query {
    /// Equality on indexed fields.
    pub filters: Vec<(String, Value)>,
    pub range: Option<Range>,
    /// Case-insensitive "contains" on the collection's text field.
    pub text: Option<String>,
    /// Indexed field to sort by (`None`: by id, which for UUIDv7 ids is
    /// creation order); ties are broken by id.
    pub sort_by: Option<String>,
    pub descending: bool,
    #[serde(skip)]
    pub limit: usize,
    #[serde(skip)]
    pub cursor: Option<String>,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            filters: Vec::new(),
            range: None,
            text: None,
            sort_by: None,
            descending: false,
            limit: 20,
            cursor: None,
        }
    }
}

impl Query {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn eq(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.filters.push((field.to_string(), value.into()));
        self
    }
    pub fn range(mut self, field: &str, lower: Option<Bound>, upper: Option<Bound>) -> Self {
        self.range = Some(Range {
            field: field.to_string(),
            lower,
            upper,
        });
        self
    }
    pub fn text(mut self, needle: &str) -> Self {
        self.text = Some(needle.to_string());
        self
    }
    pub fn sort(mut self, field: &str, descending: bool) -> Self {
        self.sort_by = Some(field.to_string());
        self.descending = descending;
        self
    }
    pub fn sort_by_id(mut self, descending: bool) -> Self {
        self.sort_by = None;
        self.descending = descending;
        self
    }
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    pub fn after(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }

    /// The page an API request asks for: limit 0 means 20, at most 100; an
    /// empty cursor means the first page.
    pub fn page(self, page: Option<&proto::common::PageRequest>) -> Self {
        let limit = match page.map(|p| p.limit).unwrap_or(0) {
            0 => 20,
            n => (n as usize).min(100),
        };
        let cursor = page.map(|p| p.cursor.clone()).filter(|c| !c.is_empty());
        self.limit(limit).after(cursor)
    }
}

/// A query checked against its collection, with the cursor decoded: what a
/// backend executes.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedQuery {
    pub filters: Vec<(IndexSpec, Value)>,
    pub range: Option<(IndexSpec, Option<Bound>, Option<Bound>)>,
    /// (field, needle) for the collection's text field.
    pub text: Option<(String, String)>,
    /// `None`: sort by id only.
    pub sort: Option<IndexSpec>,
    pub descending: bool,
    pub limit: usize,
    /// Position after which the page starts: (sort value or null, id).
    pub after: Option<(Value, String)>,
}

impl PlannedQuery {
    /// Sort key of a document under this query.
    pub fn sort_key(&self, doc: &RawDocument) -> Value {
        match &self.sort {
            Some(index) => lookup(&doc.body, &index.field)
                .cloned()
                .unwrap_or(Value::Null),
            None => Value::Null,
        }
    }
}

pub(super) fn plan(
    spec: &CollectionSpec,
    query: &Query,
    cursors: &cursor::CursorCodec,
) -> Result<PlannedQuery> {
    if query.limit == 0 || query.limit > MAX_PAGE {
        return Err(StoreError::Invalid(format!("limit must be 1..={MAX_PAGE}")));
    }
    let indexed = |field: &str| {
        spec.find_index(field).cloned().ok_or_else(|| {
            StoreError::Invalid(format!("{field} is not an indexed field of {}", spec.name))
        })
    };
    let mut filters = Vec::new();
    for (field, value) in &query.filters {
        let index = indexed(field)?;
        check_type(field, index.ty, value)?;
        filters.push((index, value.clone()));
    }
    let range = match &query.range {
        None => None,
        Some(r) => {
            let index = indexed(&r.field)?;
            for bound in [&r.lower, &r.upper].into_iter().flatten() {
                let (Bound::Inclusive(v) | Bound::Exclusive(v)) = bound;
                check_type(&r.field, index.ty, v)?;
            }
            Some((index, r.lower.clone(), r.upper.clone()))
        }
    };
    let text = match &query.text {
        None => None,
        Some(needle) if needle.contains('\0') => {
            // MongoDB refuses a pattern holding NUL and Postgres text cannot
            // hold one: a request error on every backend.
            return Err(StoreError::Invalid(
                "text search must not contain a NUL character".into(),
            ));
        }
        Some(needle) => {
            let field = spec
                .text_field
                .clone()
                .ok_or_else(|| StoreError::Invalid(format!("{} has no text field", spec.name)))?;
            Some((field, needle.clone()))
        }
    };
    let sort = match &query.sort_by {
        None => None,
        Some(field) => {
            let index = indexed(field)?;
            if index.optional {
                return Err(StoreError::Invalid(format!(
                    "cannot sort on optional field {field}"
                )));
            }
            Some(index)
        }
    };
    let after = match &query.cursor {
        None => None,
        Some(token) => Some(cursors.decode(&spec.name, query, token)?),
    };
    Ok(PlannedQuery {
        filters,
        range,
        text,
        sort,
        descending: query.descending,
        limit: query.limit,
        after,
    })
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Compares two JSON values of one indexed field (strings byte-wise,
/// integers numerically, null first).
pub fn compare_values(a: &Value, b: &Value) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Number(x), Value::Number(y)) => x.as_i64().cmp(&y.as_i64()),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Escapes `%`, `_` and `\` for a LIKE pattern.
pub(crate) fn escape_like(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len() + 2);
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
