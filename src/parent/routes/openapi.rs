//! `/api/openapi.json`: OpenAPI 3.1 generated from the endpoint table the router is built from.

use super::table::{self, Access, Body, Doc};
use crate::protocol::SERVER_VERSION;
use axum::Json;
use serde_json::{Map, Value, json};

/// The cascade API's two prefixes (PROTOCOL §1.1).
const PREFIXES: [&str; 2] = ["/api/v1/wx/cascade", "/api/v1/cascade"];

fn operation(doc: &Doc, path: &str) -> Value {
    let mut parameters: Vec<Value> = path
        .split('/')
        .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    parameters.extend(doc.query.iter().map(|name| {
        let kind = if matches!(*name, "limit" | "offset" | "node_type" | "status" | "wait")
            && !path.contains("allocations")
        {
            "number"
        } else {
            "string"
        };
        json!({"name": name, "in": "query", "required": false, "schema": {"type": kind}})
    }));
    let id: String = format!("{}{}", doc.method, path)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let envelope = json!({"description": "WeRSS envelope", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}}});
    let mut responses = Map::new();
    responses.insert("200".into(), json!({"description": "success (code 0)"}));
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
    let mut op = json!({"operationId": id, "summary": doc.summary, "parameters": parameters, "responses": responses});
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
    let mut paths = Map::new();
    let mut add = |path: String, doc: &Doc| {
        let entry = paths.entry(path.clone()).or_insert_with(|| json!({}));
        entry[doc.method] = operation(doc, &path);
    };
    for (doc, _) in table::cascade() {
        for prefix in PREFIXES {
            add(format!("{prefix}{}", doc.path), &doc);
        }
    }
    for (doc, _) in table::top() {
        add(doc.path.to_string(), &doc);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "werss-cascade", "version": SERVER_VERSION,
                 "description": "WeRSS-compatible cascade task dispatch: admin API, node API, feed outputs."},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "adminBearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "nodeAkSk": {"type": "apiKey", "in": "header", "name": "Authorization",
                             "description": "AK-SK <api_key>:<api_secret>"}
            },
            "schemas": {"Envelope": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "integer", "description": "0 on success"},
                "message": {"type": "string"},
                "data": {"description": "the result; on errors {\"error\": kind, …}"}
            }}}
        }
    })
}

/// Built once: the table (and its request schemas) does not change while the process runs.
static DOCUMENT: std::sync::LazyLock<Value> = std::sync::LazyLock::new(document);

pub(super) async fn serve() -> Json<Value> {
    Json(DOCUMENT.clone())
}
