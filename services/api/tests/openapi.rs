//! `openapi.json` against the api it describes: it is what
//! `/api/openapi.json` serves, it documents exactly the routes of
//! `rill_api::routes::ROUTES`, its limits are the settings' defaults, and
//! every operation, called for real through a `Stack`, answers a status the
//! document lists with a body of the documented shape.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use rill_api::routes::{OPENAPI, ROUTES};
use rill_api::settings::ApiLimits;
use rill_testkit::{Client, Stack};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use uuid::Uuid;

/// The router's answer to a path it has no route for.
const NO_SUCH_ROUTE: &str = r#"{"error":"not_found","message":"no such route"}"#;

/// The HTTP methods an OpenAPI path item can hold.
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json is JSON")
}

/// One documented operation.
struct Operation<'a> {
    method: String,
    path: &'a str,
    spec: &'a Value,
}

fn operations(doc: &Value) -> Vec<Operation<'_>> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut out = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if let Some(spec) = item.get(*method) {
                out.push(Operation {
                    method: method.to_uppercase(),
                    path,
                    spec,
                });
            }
        }
    }
    out
}

/// Follows `$ref`s to the object they name.
fn resolve<'a>(doc: &'a Value, mut value: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let Some(target) = value.get("$ref").and_then(Value::as_str) else {
            return value;
        };
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{target} is not a local $ref"));
        value = doc
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{target} does not resolve"));
    }
    panic!("a $ref chain is longer than 16 links")
}

/// The operation's parameters, resolved, with those of its path item.
fn parameters<'a>(doc: &'a Value, op: &Operation<'a>) -> Vec<&'a Value> {
    let shared = doc["paths"][op.path]["parameters"]
        .as_array()
        .into_iter()
        .flatten();
    let own = op.spec["parameters"].as_array().into_iter().flatten();
    shared.chain(own).map(|p| resolve(doc, p)).collect()
}

/// `problems` gets every way `value` does not fit `schema` (the parts of
/// OpenAPI 3.0 schemas this document uses).
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if value.is_null() {
        if schema["nullable"] != true {
            problems.push(format!("{at} is null but not nullable"));
        }
        return;
    }
    let fits = match schema["type"].as_str() {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => panic!("{at}: the test does not know type {other}"),
    };
    if !fits {
        problems.push(format!(
            "{at} should be of type {}, is {value}",
            schema["type"]
        ));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{at} = {value} is none of {allowed:?}"));
    }
    if let Some(text) = value.as_str() {
        if schema["format"] == "uuid" && text.parse::<Uuid>().is_err() {
            problems.push(format!("{at} = {text:?} is not a UUID"));
        }
        let chars = text.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|min| chars < min)
            || schema["maxLength"].as_u64().is_some_and(|max| chars > max)
        {
            problems.push(format!("{at} = {text:?} has a length out of bounds"));
        }
    }
    if let Some(n) = value.as_f64()
        && (schema["minimum"].as_f64().is_some_and(|min| n < min)
            || schema["maximum"].as_f64().is_some_and(|max| n > max))
    {
        problems.push(format!("{at} = {n} is out of bounds"));
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(doc, item_schema, item, &format!("{at}[{i}]"), problems);
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                problems.push(format!("{at}.{name} is required but missing"));
            }
        }
        for (name, field) in object {
            match schema["properties"].get(name) {
                Some(property) => check(doc, property, field, &format!("{at}.{name}"), problems),
                None if schema["additionalProperties"] == false => {
                    problems.push(format!("{at}.{name} is not an allowed property"));
                }
                None => {}
            }
        }
    }
}

#[test]
fn the_document_is_openapi_3_0_with_complete_operations() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3.0."), "OpenAPI 3.0.x, not {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut ids = BTreeSet::new();
    for op in operations(&doc) {
        let name = format!("{} {}", op.method, op.path);
        let id = op.spec["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no operationId"));
        assert!(ids.insert(id), "{name}: operationId {id} is used twice");
        assert!(op.spec["summary"].is_string(), "{name} has no summary");
        assert!(
            op.spec["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{name} has no responses"
        );
        let params = parameters(&doc, &op);
        let templated = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'));
        for name_in_path in templated {
            let declared = params
                .iter()
                .find(|p| p["in"] == "path" && p["name"] == name_in_path);
            let declared = declared
                .unwrap_or_else(|| panic!("{name}: path parameter {name_in_path} is not declared"));
            assert_eq!(
                declared["required"], true,
                "{name}: {name_in_path} must be required"
            );
            assert_eq!(
                declared["schema"]["format"], "uuid",
                "{name}: {name_in_path} is a UUID"
            );
        }
        for limit in params
            .iter()
            .filter(|p| p["in"] == "query" && p["name"] == "limit")
        {
            let limits = ApiLimits::default();
            let expected = json!({"type": "integer", "minimum": 1, "maximum": limits.max_page_size,
                "default": limits.default_page_size});
            assert_eq!(
                resolve(&doc, &limit["schema"]),
                &expected,
                "{name}: limit as the settings say"
            );
        }
    }
    let limits = ApiLimits::default();
    let test_data = &doc["components"]["schemas"]["TestDataRequest"]["properties"];
    assert_eq!(test_data["users"]["maximum"], json!(limits.max_test_users));
    assert_eq!(
        test_data["profiles"]["maximum"],
        json!(limits.max_test_profiles)
    );
}

#[test]
fn the_document_has_exactly_the_routes_of_the_router() {
    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .iter()
        .map(|op| (op.method.clone(), op.path.to_owned()))
        .collect();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "undocumented routes: {missing:?}; documented but not routed: {extra:?}"
    );
}

/// Who may call each route is documented as the router enforces it: the
/// `x-rill-access` of every operation is its rule in `ROUTES`, and its
/// `security` names the schemes that rule accepts.
#[test]
fn every_route_documents_who_may_call_it() {
    let doc = document();
    let mut wrong = Vec::new();
    for (method, path, rule) in ROUTES {
        let op = &doc["paths"][*path][method.to_lowercase()];
        if op["x-rill-access"] != rule.name() {
            wrong.push(format!(
                "{method} {path}: {} vs {}",
                op["x-rill-access"],
                rule.name()
            ));
        }
        let schemes: Vec<&str> = op["security"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_object()?.keys().next().map(String::as_str))
            .collect();
        let expected: &[&str] = match rule.name() {
            "anyone" => &[],
            "server" => &["apiKey"],
            _ => &["apiKey", "sessionCookie"],
        };
        if schemes != expected {
            wrong.push(format!(
                "{method} {path}: security {schemes:?}, expected {expected:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn every_ref_resolves() {
    fn walk(doc: &Value, value: &Value, broken: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(target) = map.get("$ref").and_then(Value::as_str) {
                    let found = target
                        .strip_prefix('#')
                        .and_then(|pointer| doc.pointer(pointer));
                    if found.is_none() {
                        broken.push(target.to_owned());
                    }
                }
                map.values().for_each(|v| walk(doc, v, broken));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(doc, v, broken)),
            _ => {}
        }
    }
    let doc = document();
    let mut broken = Vec::new();
    walk(&doc, &doc, &mut broken);
    assert!(broken.is_empty(), "unresolved $refs: {broken:?}");
}

/// A request body and its content type.
type Body = (&'static str, String);

/// What a request got back.
struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

async fn send(client: &Client, method: &str, path: &str, body: Option<Body>) -> Reply {
    let response = match (method, body) {
        ("GET", None) => client.get(path).await,
        ("PUT", None) => client.put(path).await,
        ("DELETE", None) => client.delete(path).await,
        ("POST", Some((content_type, body))) => client.post_raw(path, content_type, body).await,
        ("POST", None) => client.post_raw(path, "application/json", "").await,
        (_, body) => panic!("the test cannot send {method} {path} with body {body:?}"),
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    let content_type = content_type.unwrap_or_default().to_owned();
    // An event stream (the operations stream) does not end: its head is
    // the answer.
    let body = match content_type.starts_with("text/event-stream") {
        true => String::new(),
        false => response.text().await.expect("a readable body"),
    };
    Reply {
        status,
        content_type,
        body,
    }
}

/// Sends `request` as it is, framing and all, straight to the api, and
/// reads the answer until the api closes.
async fn send_raw(api: SocketAddr, request: &str) -> Reply {
    let mut stream = TcpStream::connect(api).await.expect("connect to the api");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("the api answers and closes within 10 s")
        .expect("read the answer");
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    let content_type = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.trim().to_owned());
    let (status, body) = (status.unwrap_or_default(), body.to_owned());
    Reply {
        status,
        content_type: content_type.unwrap_or_default(),
        body,
    }
}

/// Checks `reply` to `what` against the responses `op` documents; `class`
/// is the status class the request should get (2 or 4).
fn conforms(doc: &Value, op: &Operation<'_>, what: &str, reply: &Reply, class: u16) -> Vec<String> {
    let at = format!("{} {what}", op.method);
    let Reply {
        status,
        content_type,
        body,
    } = reply;
    let parsed = serde_json::from_str::<Value>(body).ok();
    if *status == 405 || (*status == 404 && parsed == serde_json::from_str(NO_SUCH_ROUTE).ok()) {
        return vec![format!(
            "{at}: the router knows no such route or method: {status} {body}"
        )];
    }
    let Some(documented) = op.spec["responses"].get(status.to_string()) else {
        return vec![format!("{at}: undocumented status {status} ({body})")];
    };
    let mut problems = Vec::new();
    if status / 100 != class {
        problems.push(format!("{at}: expected a {class}xx, got {status} ({body})"));
    }
    let schema = resolve(doc, documented).pointer("/content/application~1json/schema");
    match (schema, parsed) {
        (Some(schema), Some(value)) if content_type.starts_with("application/json") => {
            check(doc, schema, &value, &at, &mut problems);
        }
        (Some(_), _) => problems.push(format!("{at}: {status} is not JSON: {content_type} {body}")),
        // A documented body of another type (the operations page's files).
        (None, _)
            if !body.is_empty() && !documents_type(resolve(doc, documented), content_type) =>
        {
            problems.push(format!("{at}: {status} has a body: {body}"))
        }
        (None, _) => {}
    }
    problems
}

/// Who calls `op` in the conformance test: a user freshly logged in as
/// `user` for the routes about one's own login, else a server.
async fn caller_for(stack: &Stack, op: &Operation<'_>, user: uuid::Uuid) -> Client {
    match op.spec["operationId"].as_str() {
        Some("me" | "logOut" | "logOutEverywhere") => {
            let client = stack.client();
            client.login(user).await;
            client
        }
        _ => stack.server(),
    }
}

/// The account the probes of `POST /api/login` log in as.
const PROBE_ACCOUNT: &str = "Probe";
const PROBE_PASSWORD: &str = "probe-password-1";

/// A valid body for `op`, if it takes one.
fn valid_body(op: &Operation<'_>) -> Option<Body> {
    op.spec.get("requestBody")?;
    let body = match op.spec["operationId"].as_str() {
        Some("createUser") => json!({"name": "Ada"}),
        // A new name each time: a second sign-up of one name is a 409.
        Some("signUp") => {
            json!({"name": uuid::Uuid::new_v4().to_string(), "password": PROBE_PASSWORD})
        }
        Some("logIn") => json!({"name": PROBE_ACCOUNT, "password": PROBE_PASSWORD}),
        Some("createProfile") => json!({"name": "Room"}),
        Some("createTestData") => json!({"users": 2, "profiles": 1}),
        Some("publishToProfile" | "publishToUser") => json!({"event": "notice", "data": {"n": 1}}),
        other => panic!("the test has no valid body for {other:?}"),
    };
    Some(("application/json", body.to_string()))
}

/// The schema of `op`'s JSON request body.
fn body_schema<'a>(doc: &'a Value, op: &Operation<'a>) -> &'a Value {
    let schema = resolve(doc, &op.spec["requestBody"]).pointer("/content/application~1json/schema");
    resolve(doc, schema.expect("request bodies are JSON"))
}

/// `path` with each `{x}` replaced by `value(x)`.
fn fill(path: &str, value: impl Fn(&str) -> String) -> String {
    let segment = |s: &str| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        Some(name) => value(name),
        None => s.to_owned(),
    };
    path.split('/').map(segment).collect::<Vec<_>>().join("/")
}

/// The document is what the api serves; then each operation, called with
/// real ids and a valid body, succeeds; then with malformed and unknown
/// ids, bad query parameters and bad bodies it is refused, each refusal
/// documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_api_answers_as_documented() {
    let stack = Stack::start(1).await;
    let api = stack.server();
    let doc = document();

    let served = send(&api, "GET", "/api/openapi.json", None).await;
    assert_eq!(
        (served.status, served.content_type.as_str()),
        (200, "application/json")
    );
    let served_doc: Value = serde_json::from_str(&served.body).expect("the document is JSON");
    assert_eq!(served.body, OPENAPI, "the api serves openapi.json as it is");
    assert!(
        served_doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.0."))
    );

    stack.sign_up(PROBE_ACCOUNT, PROBE_PASSWORD).await;
    let (user, profile) = (
        stack.create_user("Ada").await,
        stack.create_profile("Room").await,
    );
    stack.bind(user, profile).await;
    let sender = stack.client();
    sender.login(user).await;
    let sent = sender
        .post_json(&format!("/live/{profile}/messages"), &json!({"body": "hi"}))
        .await;
    assert!(sent.status().is_success(), "send: {:?}", sent.text().await);
    // History is written by the persistence consumer: wait until it has it.
    let history = format!("/api/profiles/{profile}/messages");
    let mut stored = false;
    for _ in 0..100 {
        stored = send(&api, "GET", &history, None)
            .await
            .body
            .contains(r#""body":"hi""#);
        if stored {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stored, "the message reached the history");
    let real = |name: &str| match name {
        "user_id" => user.to_string(),
        "profile_id" => profile.to_string(),
        other => panic!("the test has no id for {other}"),
    };

    // Deletes last, the membership before the user and profile it joins.
    let mut ops = operations(&doc);
    ops.sort_by_key(|op| (op.method == "DELETE", std::cmp::Reverse(op.path.len())));
    let (deletes, others): (Vec<_>, Vec<_>) = ops.iter().partition(|op| op.method == "DELETE");
    let mut problems = Vec::new();
    for op in others {
        let caller = caller_for(&stack, op, user).await;
        problems.extend(call_validly(&caller, &doc, op, &real).await);
    }
    for op in &ops {
        let caller = caller_for(&stack, op, user).await;
        problems.extend(probe_refusals(&caller, stack.api, &doc, op, &real).await);
    }
    for op in deletes {
        problems.extend(call_validly(&api, &doc, op, &real).await);
    }
    let problems = problems.join("\n");
    assert!(
        problems.is_empty(),
        "the api and openapi.json disagree:\n{problems}"
    );
}

async fn call_validly(
    api: &Client,
    doc: &Value,
    op: &Operation<'_>,
    real: &impl Fn(&str) -> String,
) -> Vec<String> {
    let mut problems = Vec::new();
    let body = valid_body(op);
    if let Some((_, sample)) = &body {
        let sample: Value = serde_json::from_str(sample).expect("the valid body is JSON");
        let at = format!("{} {} request", op.method, op.path);
        check(doc, body_schema(doc, op), &sample, &at, &mut problems);
    }
    let reply = send(api, &op.method, &fill(op.path, real), body).await;
    problems.extend(conforms(doc, op, op.path, &reply, 2));
    problems
}

/// A request to try, and the status class it should get.
struct Probe {
    target: String,
    body: Option<Body>,
    class: u16,
}

fn probe(target: String, body: Option<Body>, class: u16) -> Probe {
    Probe {
        target,
        body,
        class,
    }
}

async fn probe_refusals(
    api: &Client,
    api_addr: SocketAddr,
    doc: &Value,
    op: &Operation<'_>,
    real: &impl Fn(&str) -> String,
) -> Vec<String> {
    let mut problems = Vec::new();
    let valid = valid_body(op);
    let mut probes = Vec::new();
    if op.path.contains('{') {
        let ghost = Uuid::new_v4().to_string();
        probes.push(probe(
            fill(op.path, |_| "not-a-uuid".to_owned()),
            valid.clone(),
            4,
        ));
        probes.push(probe(fill(op.path, |_| ghost.clone()), valid.clone(), 4));
    }
    let path = fill(op.path, real);
    let query: Vec<&Value> = parameters(doc, op)
        .into_iter()
        .filter(|p| p["in"] == "query")
        .collect();
    if !query.is_empty() {
        probes.push(probe(format!("{path}?no_such_parameter=1"), None, 4));
    }
    for param in query {
        let name = param["name"].as_str().unwrap_or_default();
        let schema = resolve(doc, &param["schema"]);
        if schema["format"] == "uuid" {
            probes.push(probe(format!("{path}?{name}=not-a-uuid"), None, 4));
            probes.push(probe(format!("{path}?{name}={}", Uuid::new_v4()), None, 2));
        }
        if let (Some(min), Some(max)) = (schema["minimum"].as_i64(), schema["maximum"].as_i64()) {
            for (value, class) in [(min - 1, 4), (min, 2), (max, 2), (max + 1, 4)] {
                probes.push(probe(format!("{path}?{name}={value}"), None, class));
            }
        }
    }
    if let Some((json_type, body)) = valid {
        let too_large = "x".repeat(ApiLimits::default().max_body_bytes as usize + 1);
        for (framing, framed) in [
            (
                format!("content-length: {}", too_large.len()),
                too_large.clone(),
            ),
            (
                "transfer-encoding: chunked".to_owned(),
                format!("{:x}\r\n{too_large}\r\n0\r\n\r\n", too_large.len()),
            ),
        ] {
            let method = &op.method;
            let request = format!(
                "{method} {path} HTTP/1.1\r\nhost: api\r\ncontent-type: {json_type}\r\n{framing}\r\nconnection: close\r\n\r\n{framed}"
            );
            let reply = send_raw(api_addr, &request).await;
            problems.extend(conforms(
                doc,
                op,
                &format!("{path} with {framing}, a body one byte too large"),
                &reply,
                4,
            ));
        }
        probes.push(probe(path.clone(), Some(("text/plain", body.clone())), 4));
        probes.push(probe(path.clone(), Some((json_type, "{".to_owned())), 4));
        if body_schema(doc, op)["additionalProperties"] == false {
            let mut extra: Value = serde_json::from_str(&body).expect("the valid body is JSON");
            extra["no_such_field"] = json!(1);
            probes.push(probe(path.clone(), Some((json_type, extra.to_string())), 4));
        }
    }
    for Probe {
        target,
        body,
        class,
    } in probes
    {
        let what = match &body {
            Some((content_type, body)) => format!("{target} with {content_type} {body}"),
            None => target.clone(),
        };
        let reply = send(api, &op.method, &target, body).await;
        problems.extend(conforms(doc, op, &what, &reply, class));
    }
    problems
}

/// Whether `response` documents a body of `content_type` (its media type,
/// parameters left out).
fn documents_type(response: &Value, content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    response["content"].get(media).is_some()
}
