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
