//! The document: examples, input schemas, and the rules it states.

use serde_json::Value;

fn document() -> Value {
    serde_json::to_value(crate::api().1).unwrap()
}

#[test]
fn every_request_body_and_main_response_has_an_example() {
    let doc = document();
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let bodies = operation["requestBody"]["content"].as_object().into_iter();
            let answers = operation["responses"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(status, _)| status.starts_with('2'))
                .filter_map(|(_, r)| r["content"].as_object());
            for (media_type, media) in bodies.chain(answers).flatten() {
                let documented = media.get("example").is_some()
                    || media.get("examples").is_some()
                    || !media_type.ends_with("json");
                // Operations answers (`/health`…) are free-form.
                if !documented && media["schema"].get("$ref").is_some() {
                    missing.push(format!("{method} {path} {media_type}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "without an example: {missing:?}");
}

fn members(doc: &Value, schema: &str) -> std::collections::BTreeSet<String> {
    let schema = &doc["components"]["schemas"][schema];
    let schema = schema["allOf"].get(0).unwrap_or(schema);
    schema["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

#[test]
fn input_schemas_have_the_members_the_handlers_read() {
    let doc = document();
    assert_eq!(members(&doc, "AddressIn"), members(&doc, "AddressBody"));
    assert_eq!(members(&doc, "PriceIn"), members(&doc, "Money"));
    assert_eq!(members(&doc, "AmountIn"), members(&doc, "Money"));
}

#[test]
fn integers_may_be_written_with_a_zero_fraction() {
    use crate::extract::parse_json;
    use crate::routes::products::StockUpdate;
    use crate::routes::reviews::ReviewCreate;
    let review: ReviewCreate = parse_json(br#"{"rating": 4.0, "comment": "ok"}"#).unwrap();
    assert_eq!(review.rating, 4);
    let stock: StockUpdate = parse_json(br#"{"delta": -3e0, "stock": null}"#).unwrap();
    assert_eq!((stock.stock, stock.delta), (None, Some(-3)));
    let fraction = parse_json::<ReviewCreate>(br#"{"rating": 4.5}"#).unwrap_err();
    assert_eq!(
        (fraction.status, fraction.errors[0].field.as_str()),
        (422, "rating")
    );
    let negative = parse_json::<ReviewCreate>(br#"{"rating": -1.0}"#).unwrap_err();
    assert_eq!(
        (negative.status, negative.errors[0].field.as_str()),
        (422, "rating")
    );
    let text = parse_json::<StockUpdate>(br#"{"stock": "3"}"#).unwrap_err();
    assert_eq!((text.status, text.errors[0].field.as_str()), (422, "stock"));
    let large = parse_json::<StockUpdate>(br#"{"delta": 2147483648}"#).unwrap_err();
    assert_eq!(
        (large.status, large.errors[0].field.as_str()),
        (422, "delta")
    );
}
