//! Rules of parameters, of text everywhere, of unsigned numbers, and the
//! formats of what the API answers.

use serde_json::{Value, json};

use super::*;

/// Rules of parameters, by path and name.
pub(super) fn parameter_rules(doc: &mut Value) {
    let paths = at(doc, "/paths").as_object_mut().expect("paths");
    for (path, item) in paths.iter_mut() {
        let operations = item.as_object_mut().expect("path item").values_mut();
        for parameter in operations
            .filter_map(|op| op.get_mut("parameters"))
            .filter_map(Value::as_array_mut)
            .flatten()
        {
            let name = parameter["name"].as_str().unwrap_or_default().to_string();
            let rules = match (path.as_str(), parameter["in"].as_str(), name.as_str()) {
                (_, Some("path"), "id") => json!({"type": "string", "format": "uuid"}),
                (_, Some("header"), "Idempotency-Key") => json!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 255,
                    "pattern": "^[!-~]([ -~]*[!-~])?$",
                }),
                (_, Some("header"), "X-Signature") => {
                    json!({"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"})
                }
                (_, Some("query"), "cursor") => json!({
                    "type": "string",
                    "pattern": "^([A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+)?$",
                    "description": "`next_cursor` of the previous page of the same query (signed: any other value is 422).",
                }),
                (_, Some("query"), "q") => {
                    json!({"type": "string", "maxLength": 200, "pattern": TEXT})
                }
                ("/api/v1/products", Some("query"), "category") => {
                    json!({"type": "string", "pattern": "^[A-Za-z0-9-]{0,50}$"})
                }
                ("/api/v1/recommendations", Some("query"), "category") => {
                    json!({"type": "string", "maxLength": 64, "pattern": LINE})
                }
                _ => continue,
            };
            let Value::Object(mut rules) = rules else {
                unreachable!("rules are objects");
            };
            if let Some(description) = rules.remove("description") {
                parameter["description"] = description;
            }
            let schema = parameter
                .get_mut("schema")
                .and_then(Value::as_object_mut)
                .expect("parameter schema");
            // `Option<String>` headers come out as `["string", "null"]`.
            schema.remove("type");
            schema.extend(rules);
        }
    }
}

/// The text rule on every string input that states no pattern, format or
/// values of its own, and on the names and strings of members a body
/// carries beyond its own.
pub(super) fn text_rules(doc: &mut Value) {
    fn strings(schema: &mut Value, top: bool, extra: &Value) {
        let Some(object) = schema.as_object_mut() else {
            return;
        };
        let is_string = match &object.get("type") {
            Some(Value::String(t)) => t == "string",
            Some(Value::Array(types)) => types.iter().any(|t| t == "string"),
            _ => false,
        };
        if is_string
            && !["pattern", "format", "enum"]
                .iter()
                .any(|k| object.contains_key(*k))
        {
            object.insert("pattern".into(), TEXT.into());
        }
        if top && object.contains_key("properties") {
            object.insert(
                "propertyNames".into(),
                json!({"type": "string", "pattern": TEXT}),
            );
            object.insert("additionalProperties".into(), extra.clone());
        }
        for (key, value) in object.iter_mut() {
            match key.as_str() {
                "properties" => value
                    .as_object_mut()
                    .into_iter()
                    .flat_map(|p| p.values_mut())
                    .for_each(|p| strings(p, false, extra)),
                "items" => strings(value, false, extra),
                "allOf" => value
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                    .for_each(|s| strings(s, top, extra)),
                "oneOf" | "anyOf" => value
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                    .for_each(|s| strings(s, false, extra)),
                _ => {}
            }
        }
    }
    let mut inputs = std::collections::BTreeSet::new();
    for item in doc["paths"]
        .as_object()
        .into_iter()
        .flat_map(|p| p.values())
    {
        for operation in item.as_object().into_iter().flat_map(|o| o.values()) {
            referenced(&operation["requestBody"], &mut inputs);
        }
    }
    loop {
        let before = inputs.len();
        for name in inputs.clone() {
            referenced(&doc["components"]["schemas"][&name], &mut inputs);
        }
        if inputs.len() == before {
            break;
        }
    }
    inputs.remove("ExtraMember");
    let extra = schema_ref("ExtraMember");
    for name in &inputs {
        strings(
            at(doc, &format!("/components/schemas/{name}")),
            true,
            &extra,
        );
    }
    let paths = at(doc, "/paths").as_object_mut().expect("paths");
    for parameter in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("parameters"))
        .filter_map(Value::as_array_mut)
        .flatten()
    {
        if let Some(schema) = parameter.get_mut("schema") {
            strings(schema, false, &Value::Null);
        }
    }
}

/// Names of the component schemas `value` refers to.
pub(super) fn referenced(value: &Value, names: &mut std::collections::BTreeSet<String>) {
    match value {
        Value::Object(object) => {
            if let Some(name) = object
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
            {
                names.insert(name.to_string());
            }
            object.values().for_each(|v| referenced(v, names));
        }
        Value::Array(items) => items.iter().for_each(|v| referenced(v, names)),
        _ => {}
    }
}

/// utoipa writes `u32` as `int32` from 0, which would cap it at
/// 2,147,483,647: unbounded ones are given their real range.
pub(super) fn unsigned_rules(doc: &mut Value) {
    match doc {
        Value::Object(object) => {
            if object.get("format").and_then(Value::as_str) == Some("int32")
                && object.get("minimum").and_then(Value::as_u64) == Some(0)
                && !object.contains_key("maximum")
            {
                object.insert("format".into(), "int64".into());
                object.insert("maximum".into(), u32::MAX.into());
            }
            object.values_mut().for_each(unsigned_rules);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_rules),
        _ => {}
    }
}

/// Formats of what the API answers: UUID ids, RFC 3339 times.
pub(super) fn output_formats(doc: &mut Value) {
    let ids: &[(&str, &[&str])] = &[
        ("UserOut", &["id"]),
        ("ProductOut", &["id"]),
        ("ReviewOut", &["product_id", "user_id"]),
        ("OrderOut", &["id", "user_id"]),
        ("OrderItemOut", &["product_id"]),
        ("PaymentOut", &["id", "order_id"]),
        ("RefundOut", &["id", "payment_id", "order_id"]),
        ("ShipmentOut", &["id", "order_id"]),
    ];
    for (schema, fields) in ids {
        for name in *fields {
            set(doc, &field(schema, name), json!({"format": "uuid"}));
        }
    }
    let schemas = at(doc, "/components/schemas")
        .as_object_mut()
        .expect("schemas");
    for schema in schemas.values_mut() {
        let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
            continue;
        };
        for (name, property) in properties.iter_mut() {
            if matches!(
                name.as_str(),
                "created_at" | "updated_at" | "trained_at" | "at"
            ) && property["type"] == "string"
            {
                property["format"] = "date-time".into();
            }
        }
    }
}
