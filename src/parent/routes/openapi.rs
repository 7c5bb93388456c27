//! `/api/openapi.json`: OpenAPI 3.1 generated from the endpoint table the router is built from:
//! query parameters from the types the handlers read, request and response schemas from the
//! types they read and answer (or the schemas `replies` writes for answers built with
//! `json!`), and one tag per area.

use super::replies::{Reply, envelope};
use super::table::{self, Access, Body, Doc, Query, Tag};
use crate::protocol::SERVER_VERSION;
use axum::Json;
use schemars::SchemaGenerator;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

/// The cascade API's two prefixes (PROTOCOL §1.1).
const PREFIXES: [&str; 2] = ["/api/v1/wx/cascade", "/api/v1/cascade"];

/// The parameters of a query type's schema: one per property, with its description, its
/// type without `null` (a parameter left out is how a query says "none").
fn query_parameters(schema: &Value) -> Vec<Value> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let properties = schema["properties"].as_object().into_iter().flatten();
    properties
        .map(|(name, property)| {
            let mut property = property.clone();
            let description = property
                .as_object_mut()
                .and_then(|p| p.remove("description"));
            if let Some(types) = property["type"].as_array() {
                let types: Vec<&Value> = types.iter().filter(|t| *t != "null").collect();
                property["type"] = match types.as_slice() {
                    [one] => (*one).clone(),
                    many => json!(many),
                };
            }
            let mut parameter = json!({"name": name, "in": "query",
                                       "required": required.contains(&name.as_str()), "schema": property});
            if let Some(description) = description {
                parameter["description"] = description;
            }
            parameter
        })
        .collect()
}

/// The success responses: the envelope with `data` described, a bare JSON body, or the
/// media types of a document. An endpoint that never succeeds has none.
fn success(reply: &Reply, g: &mut SchemaGenerator) -> Map<String, Value> {
    let json = |description: &str, schema: Value| json!({"description": description, "content": {"application/json": {"schema": schema}}});
    let mut responses = Map::new();
    match reply {
        Reply::Data(make) => {
            responses.insert("200".into(), json("success (code 0)", envelope(make(g))));
        }
        Reply::DataOr(status, make) => {
            let schema = envelope(make(g));
            let other = match *status {
                "201" => "created (code 0)",
                "202" => "accepted (code 0)",
                _ => "success (code 0)",
            };
            responses.insert("200".into(), json("success (code 0)", schema.clone()));
            responses.insert((*status).into(), json(other, schema));
        }
        Reply::Body(make) => {
            responses.insert("200".into(), json("success", make(g)));
        }
        Reply::Media(types) => {
            let content: Map<String, Value> = types
                .iter()
                .map(|t| ((*t).to_string(), json!({"schema": {"type": "string"}})))
                .collect();
            responses.insert(
                "200".into(),
                json!({"description": "success", "content": content}),
            );
        }
        Reply::Refused(_) => {}
    }
    responses
}

fn operation(doc: &Doc, path: &str, g: &mut SchemaGenerator) -> Value {
    let mut parameters: Vec<Value> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    if let Query::Of(schema) = &doc.query {
        parameters.extend(query_parameters(schema));
    }
    let id: String = format!("{}{}", doc.method, path)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let envelope = json!({"description": "WeRSS envelope", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}});
    let mut responses = success(&doc.reply, g);
    for (code, what) in [
        ("400", "bad request"),
        ("401", "not authenticated"),
        ("403", "wrong role"),
        ("404", "not found"),
        ("409", "lease lost or invalid transition"),
        ("503", "busy or shutting down"),
    ] {
        let mut r = envelope.clone();
        r["description"] = json!(what);
        responses.insert(code.into(), r);
    }
    if let Reply::Refused(status) = doc.reply {
        let mut r = envelope;
        r["description"] = json!("always: this endpoint never succeeds");
        responses.insert(status.into(), r);
    }
    let (tag, _) = doc.tag.describe();
    let mut op = json!({"operationId": id, "summary": doc.summary, "tags": [tag],
                        "parameters": parameters, "responses": responses});
    let security = match doc.access {
        Access::Admin => json!([{"adminBearer": []}]),
        Access::Node => json!([{"nodeAkSk": []}]),
        Access::Any => json!([{"adminBearer": []}, {"nodeAkSk": []}]),
        Access::Public => json!([]),
    };
    op["security"] = security;
    let body = match &doc.body {
        Body::None => None,
        Body::Json(schema) => Some(("application/json", schema.clone())),
        Body::Form(schema) => Some(("application/x-www-form-urlencoded", schema.clone())),
        Body::Text(media) => Some((*media, json!({"type": "string"}))),
    };
    if let Some((media, schema)) = body {
        op["requestBody"] = json!({"required": true, "content": {media: {"schema": schema}}});
    }
    op
}

/// The document.
pub(super) fn document() -> Value {
    // Response types are described as they serialize, each named type once under
    // `components/schemas`.
    let mut g = SchemaSettings::draft2020_12()
        .for_serialize()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator();
    let mut paths = Map::new();
    let mut add = |path: String, doc: &Doc| {
        let entry = paths.entry(path.clone()).or_insert_with(|| json!({}));
        entry[doc.method] = operation(doc, &path, &mut g);
    };
    for (doc, _) in table::cascade() {
        for prefix in PREFIXES {
            add(format!("{prefix}{}", doc.path), &doc);
        }
    }
    for (doc, _) in table::top() {
        add(doc.path.to_string(), &doc);
    }
    let mut schemas = g.take_definitions(true);
    schemas.insert(
        "Envelope".into(),
        json!({"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "integer", "description": "0 on success"},
            "message": {"type": "string"},
            "data": {"description": "the result; on errors {\"error\": kind, …}"}
        }}),
    );
    let tags: Vec<Value> = Tag::ALL
        .iter()
        .map(|t| {
            let (name, description) = t.describe();
            json!({"name": name, "description": description})
        })
        .collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "werss-cascade", "version": SERVER_VERSION,
                 "description": "WeRSS-compatible cascade task dispatch: admin API, node API, feed outputs."},
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "nodeAkSk": {"type": "apiKey", "in": "header", "name": "Authorization",
                             "description": "AK-SK <api_key>:<api_secret>"}
            },
            "schemas": schemas
        }
    })
}

/// Built once: the table (and its schemas) does not change while the process runs.
static DOCUMENT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(document);

pub(super) async fn serve() -> Json<Value> {
    Json(DOCUMENT.clone())
}
