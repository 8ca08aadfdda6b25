//! What a service declares about a collection: its indexes and their types.

use serde_json::Value;

use super::{Result, StoreError};

/// Type of an indexed field, which fixes how it compares and sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// Compared byte-wise (UTF-8), like Rust's `str` ordering.
    String,
    /// Signed 64-bit integer.
    Int,
}

/// A secondary index on one field (a dotted path such as `address.city`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub field: String,
    pub ty: FieldType,
    pub unique: bool,
    /// Whether documents may lack the field (or hold null). Only required
    /// fields can be sorted on; a missing value never collides in a unique
    /// index.
    pub optional: bool,
}

impl IndexSpec {
    pub fn new(field: &str, ty: FieldType) -> Self {
        Self {
            field: field.to_string(),
            ty,
            unique: false,
            optional: false,
        }
    }
    pub fn unique(mut self) -> Self {
        self.unique = true;
        self
    }
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }
}

/// A collection and its indexes, declared by the service that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionSpec {
    pub name: String,
    pub indexes: Vec<IndexSpec>,
    /// The one string field that [`Query::text`] searches (case-insensitive
    /// "contains").
    pub text_field: Option<String>,
}

impl CollectionSpec {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            indexes: Vec::new(),
            text_field: None,
        }
    }

    pub fn index(mut self, index: IndexSpec) -> Self {
        self.indexes.push(index);
        self
    }

    pub fn text(mut self, field: &str) -> Self {
        self.text_field = Some(field.to_string());
        self
    }

    pub fn find_index(&self, field: &str) -> Option<&IndexSpec> {
        self.indexes.iter().find(|i| i.field == field)
    }

    /// Names are used as SQL identifiers and index names: keep them plain.
    pub fn validate(&self) -> Result<()> {
        let plain = |s: &str, dots: bool| {
            !s.is_empty()
                && s.len() <= 48
                && s.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (dots && c == '.')
                })
                && !s.starts_with(['.', '_'])
        };
        if !plain(&self.name, false) {
            return Err(StoreError::Invalid(format!(
                "collection name {:?} must be [a-z0-9_]",
                self.name
            )));
        }
        for index in &self.indexes {
            if !plain(&index.field, true) || index.field == "id" {
                return Err(StoreError::Invalid(format!(
                    "index field {:?} must be [a-z0-9_.] and not id",
                    index.field
                )));
            }
        }
        if let Some(text) = &self.text_field
            && !plain(text, true)
        {
            return Err(StoreError::Invalid(format!(
                "text field {text:?} must be [a-z0-9_.]"
            )));
        }
        Ok(())
    }

    /// Checks a document before a write: every indexed field has its type,
    /// and required ones are present.
    pub fn check_document(&self, doc: &Value) -> Result<()> {
        if !doc.is_object() {
            return Err(StoreError::Invalid(
                "a document must be a JSON object".into(),
            ));
        }
        for index in &self.indexes {
            match lookup(doc, &index.field) {
                None | Some(Value::Null) if index.optional => {}
                None | Some(Value::Null) => {
                    return Err(StoreError::Invalid(format!(
                        "indexed field {} is missing",
                        index.field
                    )));
                }
                Some(value) => check_type(&index.field, index.ty, value)?,
            }
        }
        Ok(())
    }
}

/// The value at a dotted path.
pub fn lookup<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(doc, |v, key| v.get(key))
}

pub(super) fn check_type(field: &str, ty: FieldType, value: &Value) -> Result<()> {
    let ok = match ty {
        FieldType::String => value.is_string(),
        FieldType::Int => value.is_i64(),
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "field {field} must be {}",
            match ty {
                FieldType::String => "a string",
                FieldType::Int => "a 64-bit integer",
            }
        )))
    }
}
