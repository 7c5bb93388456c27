//! `/api/openapi.json`: a valid OpenAPI 3 document whose every operation the router serves.

use crate::helpers::TestParent;
use reqwest::Method;
use serde_json::Value;

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
    let doc = include_str!("../../docs/PROTOCOL.md");
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
