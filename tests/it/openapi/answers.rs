//! Real answers conform to the schemas `/api/openapi.json` publishes for them (a request or
//! more per kind of answer), checked by a small validator of the JSON Schema the document
//! writes (no validator crate is a dependency).

use super::spec;
use crate::helpers::{ADMIN, Auth, PASSWORD, Reply, TestParent, cascade};
use reqwest::Method;
use serde_json::{Value, json};

/// Where `value` departs from `schema` as the document writes schemas (`$ref` into
/// components, `anyOf`, `type`, `const`, `required`, `properties`, `items`); an object may
/// carry no property its schema does not list.
fn mismatch(doc: &Value, schema: &Value, value: &Value, at: &str) -> Option<String> {
    if let Some(name) = schema["$ref"].as_str() {
        let name = name
            .strip_prefix("#/components/schemas/")
            .expect("local ref");
        let target = &doc["components"]["schemas"][name];
        assert!(target.is_object(), "{name} is published");
        return mismatch(doc, target, value, at);
    }
    if let Some(options) = schema["anyOf"].as_array() {
        let errors: Vec<String> = options
            .iter()
            .filter_map(|o| mismatch(doc, o, value, at))
            .collect();
        if errors.len() == options.len() {
            return Some(format!("{at}: no anyOf matches: {errors:?}"));
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let is = |t: &str| match t {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| is(t)) {
        return Some(format!("{at}: {value} is not {types:?}"));
    }
    if let Some(c) = schema.get("const").filter(|c| *c != value) {
        return Some(format!("{at}: {value} is not {c}"));
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().expect("name");
            if !object.contains_key(name) {
                return Some(format!("{at}: {name} is missing"));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, v) in object {
                let Some(s) = properties.get(name) else {
                    return Some(format!("{at}: {name} is not in the schema"));
                };
                if let Some(e) = mismatch(doc, s, v, &format!("{at}.{name}")) {
                    return Some(e);
                }
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, v) in list.iter().enumerate() {
            if let Some(e) = mismatch(doc, items, v, &format!("{at}[{i}]")) {
                return Some(e);
            }
        }
    }
    None
}

/// Asserts that `reply` (to `method path`, the documented path) is a success and conforms
/// to the schema the document gives for its status.
#[track_caller]
fn conforms(doc: &Value, method: &str, path: &str, reply: &Reply) {
    let status = reply.status.as_str();
    assert!(
        reply.status.is_success() && reply.body.get("code").is_none_or(|c| *c == 0),
        "{method} {path} succeeds: {status} {}",
        reply.text
    );
    let schema =
        &doc["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path} documents {status}");
    if let Some(e) = mismatch(doc, schema, &reply.body, "body") {
        panic!("{method} {path}: {e}\n{}", reply.text);
    }
}

/// A node created, given credentials and brought online (taking commands), each answer
/// checked; its id and credentials.
async fn online_node(p: &TestParent, doc: &Value) -> (String, Auth) {
    let admin = p.admin();
    let body = json!({"node_type": 1, "name": "schema"});
    let created = p.post(&cascade("/nodes"), &admin, body).await;
    conforms(doc, "post", &cascade("/nodes"), &created);
    let id = created.ok()["node_id"].as_str().expect("id").to_string();
    let path = cascade(&format!("/nodes/{id}/credentials"));
    let creds = p.post(&path, &admin, json!({})).await;
    conforms(doc, "post", &cascade("/nodes/{id}/credentials"), &creds);
    let key = creds.ok()["api_key"].as_str().expect("key");
    let node = Auth::AkSk(
        key.into(),
        creds.ok()["api_secret"].as_str().expect("secret").into(),
    );
    let beat = json!({"features": ["commands"]});
    let beat = p.post(&cascade("/heartbeat"), &node, beat).await;
    conforms(doc, "post", &cascade("/heartbeat"), &beat);
    (id, node)
}

#[tokio::test]
async fn the_node_list_and_login_flows_conform_to_their_published_schemas() {
    let p = TestParent::spawn().await;
    let doc = spec(&p).await;
    let admin = p.admin();
    let (id, node) = online_node(&p, &doc).await;
    // The round trip of issue 16: the node list as the dashboard reads it.
    let nodes = p.get(&cascade("/nodes"), &admin).await;
    assert_eq!(
        nodes.ok().as_array().map(Vec::len),
        Some(1),
        "{}",
        nodes.text
    );
    conforms(&doc, "get", &cascade("/nodes"), &nodes);
    let one = p.get(&cascade(&format!("/nodes/{id}")), &admin).await;
    conforms(&doc, "get", &cascade("/nodes/{id}"), &one);
    let path = cascade(&format!("/nodes/{id}/test-connection"));
    let ping = p.post(&path, &admin, json!({})).await;
    conforms(&doc, "post", &cascade("/nodes/{id}/test-connection"), &ping);
    let path = cascade(&format!("/nodes/{id}/logins"));
    let asked = p.post(&path, &admin, json!({"kind": "mp"})).await;
    assert_eq!(asked.status, 202, "{}", asked.text);
    conforms(&doc, "post", &cascade("/nodes/{id}/logins"), &asked);
    let flows = p.get(&cascade("/login-flows"), &admin).await;
    assert_eq!(
        flows.ok().as_array().map(Vec::len),
        Some(1),
        "{}",
        flows.text
    );
    conforms(&doc, "get", &cascade("/login-flows"), &flows);
    let flow = cascade(&format!(
        "/login-flows/{}",
        asked.ok()["id"].as_str().expect("id")
    ));
    conforms(
        &doc,
        "get",
        &cascade("/login-flows/{id}"),
        &p.get(&flow, &admin).await,
    );
    conforms(
        &doc,
        "delete",
        &cascade("/login-flows/{id}"),
        &p.delete(&flow, &admin).await,
    );
    let started = p
        .post(&cascade("/login-flows"), &node, json!({"kind": "mp"}))
        .await;
    conforms(&doc, "post", &cascade("/login-flows"), &started);
    p.shutdown().await;
}

#[tokio::test]
async fn answers_about_work_conform_to_their_published_schemas() {
    let p = TestParent::spawn().await;
    let doc = spec(&p).await;
    let admin = p.admin();
    let (_, node) = online_node(&p, &doc).await;
    let feeds = p.feeds(7_100, 2).await;
    let task = p.task(&feeds).await;
    let path = cascade(&format!("/dispatch-task?task_id={task}"));
    let dispatched = p.post(&path, &admin, json!({})).await;
    conforms(&doc, "post", &cascade("/dispatch-task"), &dispatched);
    let claim = cascade("/claim-task");
    let claimed = p
        .send(Method::POST, &format!("{claim}?limit=1"), &node, None)
        .await;
    conforms(&doc, "post", &claim, &claimed);
    let package = claimed.ok().clone();
    let body = json!({"allocation_id": package["allocation_id"], "status": "executing",
                      "lease_token": package["lease_token"]});
    let status = p.put(&cascade("/task-status"), &node, body).await;
    conforms(&doc, "put", &cascade("/task-status"), &status);
    let list = p
        .send(Method::POST, &format!("{claim}?limit=2"), &node, None)
        .await;
    conforms(&doc, "post", &claim, &list);
    let results: Vec<Value> = package["feeds"]
        .as_array()
        .expect("feeds")
        .iter()
        .map(|f| json!({"feed_id": f["id"], "success": true, "article_count": 0}))
        .collect();
    let body = json!({"allocation_id": package["allocation_id"], "task_id": package["task_id"],
                      "results": results, "article_count": 0, "lease_token": package["lease_token"]});
    let completed = p.post(&cascade("/report-completion"), &node, body).await;
    conforms(&doc, "post", &cascade("/report-completion"), &completed);
    let lone = p.feeds(7_200, 1).await;
    p.task(&lone).await;
    let checked = p
        .post(
            &cascade(&format!("/feeds/{}/check", lone[0])),
            &admin,
            json!({}),
        )
        .await;
    conforms(&doc, "post", &cascade("/feeds/{id}/check"), &checked);
    let allocation = package["allocation_id"].as_str().expect("allocation id");
    for (path, shown) in [
        (format!("/allocations/{allocation}"), "/allocations/{id}"),
        (format!("/message-tasks/{task}"), "/message-tasks/{id}"),
        (format!("/feeds/{}", feeds[0]), "/feeds/{id}"),
    ] {
        let r = p.get(&cascade(&path), &admin).await;
        conforms(&doc, "get", &cascade(shown), &r);
    }
    p.shutdown().await;
}

#[tokio::test]
async fn lists_monitoring_and_service_answers_conform_to_their_published_schemas() {
    let p = TestParent::spawn().await;
    let doc = spec(&p).await;
    let admin = p.admin();
    online_node(&p, &doc).await;
    let feeds = p.feeds(7_300, 3).await;
    let task = p.task(&feeds).await;
    p.dispatch(&task).await;
    for path in [
        "/allocations",
        "/pending-allocations",
        "/feed-status",
        "/plan",
        "/plan?target=1h",
        "/stats",
        "/audit",
        "/sync-logs",
        "/sources",
        "/logins",
        "/login-flows",
        "/feeds",
        "/message-tasks",
        "/scheduler",
    ] {
        let r = p.get(&cascade(path), &admin).await;
        let shown = path.split('?').next().unwrap_or(path);
        conforms(&doc, "get", &cascade(shown), &r);
    }
    let scheduler = p
        .post(&cascade("/start-scheduler"), &admin, json!({}))
        .await;
    conforms(&doc, "post", &cascade("/start-scheduler"), &scheduler);
    for path in ["/healthz", "/readyz"] {
        conforms(&doc, "get", path, &p.get(path, &Auth::None).await);
    }
    let login = p.login(ADMIN, PASSWORD).await;
    conforms(&doc, "post", "/api/v1/wx/auth/login", &login);
    let form = [("username", ADMIN), ("password", PASSWORD)];
    let token = p
        .client
        .post(p.url("/api/v1/wx/auth/token"))
        .form(&form)
        .send()
        .await;
    let token = TestParent::reply(token.expect("sent")).await;
    conforms(&doc, "post", "/api/v1/wx/auth/token", &token);
    conforms(
        &doc,
        "get",
        "/api/openapi.json",
        &p.get("/api/openapi.json", &Auth::None).await,
    );
    p.shutdown().await;
}
