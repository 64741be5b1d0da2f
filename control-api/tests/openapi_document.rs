//! The OpenAPI document as clients see it: unique operation ids (generated clients name
//! their methods after them), typed bodies, and the copy in `dashboard/openapi.json` that the
//! dashboard's API types are generated from. `TOLLGATE_WRITE_OPENAPI=1` rewrites that copy
//! (`make dashboard` does).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::Value;
use tollgate_control_api::openapi::ApiDoc;
use utoipa::OpenApi;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../dashboard/openapi.json");

fn document() -> Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap()
}

#[test]
fn the_dashboards_copy_of_the_document_is_current() {
    let text = ApiDoc::openapi().to_pretty_json().unwrap() + "\n";
    if std::env::var_os("TOLLGATE_WRITE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == text,
        "dashboard/openapi.json differs from the served document: run `make dashboard` and commit"
    );
}

#[test]
fn every_operation_has_its_own_operation_id() {
    let doc = document();
    let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let id = operation["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            ids.entry(id.to_owned())
                .or_default()
                .push(format!("{method} {path}"));
        }
    }
    let shared: Vec<_> = ids.iter().filter(|(_, ops)| ops.len() > 1).collect();
    assert!(shared.is_empty(), "shared operation ids: {shared:?}");
    assert!(ids.contains_key("listTenants") && ids.contains_key("createPlan"));
}

#[test]
fn plan_bodies_are_typed_as_precisely_as_the_validation() {
    let doc = document();
    let schemas = &doc["components"]["schemas"];
    let create = &schemas["CreatePlan"]["properties"];
    assert_eq!(create["rate"]["$ref"], "#/components/schemas/RatePolicy");
    assert_eq!(create["pricing"]["$ref"], "#/components/schemas/Pricing");
    let rate = &schemas["RatePolicy"]["properties"];
    assert_eq!(rate["requests_per_second"]["minimum"], 1);
    assert_eq!(rate["burst"]["maximum"], 10_000_000);
    let pricing = &schemas["Pricing"];
    assert_eq!(pricing["discriminator"]["propertyName"], "model");
    assert_eq!(pricing["oneOf"].as_array().unwrap().len(), 4);
    // The tag is a one-value enum in each variant (inlined, so under a one-item oneOf).
    let model = schemas["GraduatedPricing"]["properties"]["model"].to_string();
    assert!(model.contains(r#""enum":["graduated"]"#), "{model}");
    assert!(
        schemas["GraduatedPricing"]["required"]
            .as_array()
            .unwrap()
            .contains(&Value::from("model"))
    );
    assert!(
        schemas["CurrencyCode"]["enum"]
            .as_array()
            .unwrap()
            .contains(&Value::from("JPY"))
    );
    // Nothing in a plan is left as a free-form object.
    fn untyped(value: &Value, path: &str, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if map.get("type") == Some(&Value::from("object"))
                    && !map.contains_key("properties")
                    && !map.contains_key("additionalProperties")
                {
                    out.push(path.to_owned());
                }
                for (key, child) in map {
                    untyped(child, &format!("{path}.{key}"), out);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    untyped(child, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut found = Vec::new();
    for name in [
        "CreatePlan",
        "UpdatePlan",
        "PlanView",
        "RatePolicy",
        "RatePatch",
        "Quota",
        "Pricing",
        "FlatPricing",
        "GraduatedPricing",
        "VolumePricing",
        "PackagePricing",
        "PriceTier",
    ] {
        assert!(schemas.get(name).is_some(), "{name} is not in the document");
        untyped(&schemas[name], name, &mut found);
    }
    assert!(found.is_empty(), "untyped objects: {found:?}");
}
