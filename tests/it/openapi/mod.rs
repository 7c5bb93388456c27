//! `/api/openapi.json`: a valid OpenAPI 3 document whose every operation the router serves,
//! tagged, with its query parameters and the schema of its answer; real answers conform to
//! those schemas (`answers`).

mod answers;

use crate::helpers::{Auth, TestParent};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn every_documented_operation_is_routed_and_nothing_leaks() {
    let p = TestParent::spawn().await;
    let doc: Value = p
        .client
        .get(p.url("/api/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    // Request bodies carry the schema of the type the handler reads.
    let body = |path: &str, method: &str, media: &str| {
        doc["paths"][path][method]["requestBody"]["content"][media]["schema"].clone()
    };
    let node = body("/api/v1/wx/cascade/nodes", "post", "application/json");
    assert!(node["properties"]["name"].is_object(), "{node}");
    assert!(
        node["required"]
            .as_array()
            .is_some_and(|r| r.contains(&"name".into())),
        "{node}"
    );
    let status = body("/api/v1/cascade/task-status", "put", "application/json");
    assert!(
        status["properties"]["allocation_id"].is_object()
            && status["properties"]["lease_token"].is_object(),
        "{status}"
    );
    let login = body(
        "/api/v1/wx/auth/login",
        "post",
        "application/x-www-form-urlencoded",
    );
    assert!(login["properties"]["password"].is_object(), "{login}");
    assert!(
        !doc.to_string().contains("#/$defs/"),
        "subschemas are inlined"
    );
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 40, "both prefixes and the top-level routes");
    for prefix in ["/api/v1/wx/cascade", "/api/v1/cascade"] {
        assert!(paths.contains_key(&format!("{prefix}/claim-task")));
    }
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            operations += 1;
            assert!(
                op["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{method} {path}"
            );
            let security = op["security"].as_array().expect("security");
            let scheme_names: Vec<&str> = security
                .iter()
                .filter_map(|s| s.as_object()?.keys().next().map(String::as_str))
                .collect();
            for name in scheme_names {
                assert!(
                    doc["components"]["securitySchemes"][name].is_object(),
                    "{name}"
                );
            }
            // Called without credentials: whatever the answer, it is not the router's
            // "no such route" or "method not allowed".
            let concrete = path
                .replace("{id}", "x")
                .replace("{feed_id}", "x")
                .replace("{file}", "x.rss");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let r = p
                .client
                .request(m, p.url(&concrete))
                .send()
                .await
                .expect("sent");
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path} is routed");
            assert!(
                !text.contains("no such route"),
                "{method} {path} is routed: {text}"
            );
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(
                    matches!(status, 401 | 403),
                    "{method} {path} needs credentials: {status}"
                );
            }
        }
    }
    assert!(operations > 60, "{operations}");
    p.shutdown().await;
}

/// docs/PROTOCOL.md names every operation the parent routes (the cascade API as
/// `METHOD {P}/path`, the rest by their own path).
#[tokio::test]
async fn the_protocol_reference_lists_every_operation() {
    let doc = include_str!("../../../docs/PROTOCOL.md");
    let p = crate::helpers::TestParent::spawn().await;
    let spec = p
        .get("/api/openapi.json", &crate::helpers::Auth::None)
        .await;
    let spec: serde_json::Value = serde_json::from_str(&spec.text).expect("json");
    let mut missing = Vec::new();
    let mut seen = 0;
    for (path, ops) in spec["paths"].as_object().expect("paths") {
        if path.starts_with("/api/v1/cascade/") {
            continue; // the same operations under WeRSS's documented prefix
        }
        let shown = path
            .strip_prefix("/api/v1/wx/cascade")
            .map_or_else(|| path.clone(), |rest| format!("{{P}}{rest}"));
        for method in ops.as_object().expect("operations").keys() {
            seen += 1;
            let name = format!("`{} {shown}`", method.to_uppercase());
            if !doc.contains(&name) {
                missing.push(name);
            }
        }
    }
    assert!(seen > 50, "the spec lists the operations ({seen})");
    assert!(missing.is_empty(), "not in docs/PROTOCOL.md: {missing:?}");
    p.shutdown().await;
}

/// The document the parent serves.
async fn spec(p: &TestParent) -> Value {
    let r = p.get("/api/openapi.json", &Auth::None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

#[tokio::test]
async fn every_operation_has_a_declared_tag_and_describes_its_success() {
    let p = TestParent::spawn().await;
    let doc = spec(&p).await;
    let declared: Vec<&str> = doc["tags"]
        .as_array()
        .expect("top-level tags")
        .iter()
        .map(|t| {
            assert!(
                t["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{t}"
            );
            t["name"].as_str().expect("tag name")
        })
        .collect();
    assert!(declared.contains(&"node API") && declared.contains(&"monitoring"));
    let mut used = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let tags = op["tags"].as_array().expect("tags");
            assert_eq!(tags.len(), 1, "{method} {path}: one tag");
            let tag = tags[0].as_str().expect("tag");
            assert!(
                declared.contains(&tag),
                "{method} {path}: {tag} is declared"
            );
            used.insert(tag);
            if op["security"] == json!([{"nodeAkSk": []}]) {
                assert_eq!(tag, "node API", "{method} {path}");
            }
            let Some(ok) = op["responses"].get("200") else {
                // The one operation that never succeeds documents its only answer.
                assert!(path.ends_with("/notify"), "{method} {path} has no 200");
                let always = &op["responses"]["400"]["description"];
                assert!(always.as_str().is_some_and(|d| d.starts_with("always")));
                continue;
            };
            let content = ok["content"].as_object().expect("200 content");
            assert!(!content.is_empty(), "{method} {path}");
            for (media, body) in content {
                let schema = &body["schema"];
                assert!(schema.is_object(), "{method} {path} {media}: a schema");
                if media == "application/json" && schema["properties"].get("code").is_some() {
                    let data = &schema["properties"]["data"];
                    assert!(
                        data.get("$ref").is_some()
                            || data.get("type").is_some()
                            || data.get("anyOf").is_some(),
                        "{method} {path}: data is described: {data}"
                    );
                }
            }
        }
    }
    assert_eq!(used.len(), declared.len(), "every declared tag is used");
    // Typed views are shared under components/schemas.
    let nodes = &doc["paths"]["/api/v1/wx/cascade/nodes"]["get"]["responses"]["200"];
    let data = &nodes["content"]["application/json"]["schema"]["properties"]["data"];
    assert_eq!(data["items"]["$ref"], "#/components/schemas/NodeView");
    assert!(doc["components"]["schemas"]["NodeView"]["properties"]["online"].is_object());
    let feed = &doc["paths"]["/feed/{file}"]["get"]["responses"]["200"]["content"];
    assert!(feed["application/atom+xml"].is_object(), "{feed}");
    p.shutdown().await;
}

/// The query parameters of `method path`: name, schema type, description.
fn query_of(doc: &Value, method: &str, path: &str) -> Vec<(String, Value, String)> {
    doc["paths"][path][method]["parameters"]
        .as_array()
        .unwrap_or_else(|| panic!("{method} {path}"))
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| {
            let name = p["name"].as_str().expect("name").to_string();
            let description = p["description"].as_str().unwrap_or_default().to_string();
            (name, p["schema"]["type"].clone(), description)
        })
        .collect()
}

fn names(params: &[(String, Value, String)]) -> Vec<&str> {
    params.iter().map(|(n, _, _)| n.as_str()).collect()
}

#[tokio::test]
async fn query_parameters_are_the_fields_of_the_handlers_query_types() {
    let p = TestParent::spawn().await;
    let doc = spec(&p).await;
    let allocations = query_of(&doc, "get", "/api/v1/cascade/allocations");
    assert_eq!(
        names(&allocations),
        [
            "task_id",
            "node_id",
            "status",
            "schedule_run_id",
            "feed_id",
            "reason",
            "limit",
            "offset"
        ]
    );
    for (name, kind, _) in &allocations {
        let expected = if matches!(name.as_str(), "limit" | "offset") {
            "integer"
        } else {
            "string"
        };
        assert_eq!(kind, expected, "allocations {name}");
    }
    let status = query_of(&doc, "get", "/api/v1/wx/cascade/feed-status");
    assert_eq!(
        names(&status),
        ["feed_id", "q", "source", "state", "limit", "offset"]
    );
    let claim = query_of(&doc, "post", "/api/v1/wx/cascade/claim-task");
    assert_eq!(names(&claim), ["node_id", "limit", "wait", "kinds"]);
    assert_eq!(claim[2].1, "number", "wait is seconds, fractions allowed");
    let plan = query_of(&doc, "get", "/api/v1/wx/cascade/plan");
    assert_eq!(
        plan[2],
        ("per_login_day".into(), json!("number"), plan[2].2.clone())
    );
    assert_eq!(
        query_of(&doc, "get", "/api/v1/wx/cascade/nodes")[0].1,
        "integer"
    );
    assert!(query_of(&doc, "get", "/api/v1/wx/cascade/nodes/{id}").is_empty());
    assert_eq!(
        names(&query_of(&doc, "get", "/rss/{feed_id}")),
        ["limit", "offset"]
    );
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("path item") {
            for (name, kind, description) in query_of(&doc, method, path) {
                assert!(
                    kind.is_string(),
                    "{method} {path} {name}: one type, not null: {kind}"
                );
                assert!(
                    !description.is_empty(),
                    "{method} {path} {name} is described"
                );
            }
        }
    }
    p.shutdown().await;
}
