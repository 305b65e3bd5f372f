//! The REST api against a real broker, persistence consumer and store:
//! every resource, read-your-writes, and bad input on every endpoint.

use rill_testkit::{Client, Stack};
use serde_json::{Value, json};
use uuid::Uuid;

async fn body(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

async fn expect_error(response: reqwest::Response, status: u16, code: &str) {
    assert_eq!(response.status(), status, "expected {code}");
    let body = body(response).await;
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_created_read_listed_and_deleted() {
    let stack = Stack::start(1).await;
    let api = stack.server();
    let created = api
        .post_json("/api/users", &json!({"name": "  Ada  "}))
        .await;
    assert_eq!(
        created.status(),
        201,
        "the write was visible before the reply"
    );
    let ada = body(created).await;
    assert_eq!(ada["name"], "Ada");
    let id = ada["id"].as_str().expect("id").to_owned();

    let read = body(api.get(&format!("/api/users/{id}")).await).await;
    assert_eq!(read, ada);

    for name in ["Bob", "Cy", "Di"] {
        stack.create_user(name).await;
    }
    let first = body(api.get("/api/users?limit=3").await).await;
    assert_eq!(first["items"].as_array().map(Vec::len), Some(3));
    let next = first["next"].as_str().expect("a next page");
    let second = body(api.get(&format!("/api/users?limit=3&after={next}")).await).await;
    assert_eq!(second["items"].as_array().map(Vec::len), Some(1));
    assert!(second["next"].is_null());

    // The api counts its writes (its /metrics is not routed through Traefik).
    let metrics = Client::new(&format!("http://{}", stack.api))
        .get("/metrics")
        .await;
    let metrics = metrics.text().await.expect("metrics text");
    let published = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rill_api_directory_events_published_total "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .expect("the published counter");
    assert_eq!(published, 4, "four users created");
    assert!(
        metrics.contains("rill_api_write_visible_seconds_count 4"),
        "{metrics}"
    );

    assert_eq!(api.delete(&format!("/api/users/{id}")).await.status(), 204);
    expect_error(api.get(&format!("/api/users/{id}")).await, 404, "not_found").await;
    expect_error(
        api.delete(&format!("/api/users/{id}")).await,
        404,
        "not_found",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_members_and_a_users_profiles() {
    let stack = Stack::start(1).await;
    let api = stack.server();
    let (r1, r2) = (
        stack.create_profile("r1").await,
        stack.create_profile("r2").await,
    );
    let (ada, bob) = (
        stack.create_user("Ada").await,
        stack.create_user("Bob").await,
    );
    stack.bind(ada, r1).await;
    stack.bind(ada, r2).await;
    stack.bind(bob, r1).await;

    let profile = body(api.get(&format!("/api/profiles/{r1}")).await).await;
    assert_eq!(profile["name"], "r1");
    let members = body(api.get(&format!("/api/profiles/{r1}/members")).await).await;
    let mut ids: Vec<String> = members["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    let mut expected = vec![ada.to_string(), bob.to_string()];
    expected.sort();
    assert_eq!(ids, expected);

    let of_ada = body(api.get(&format!("/api/users/{ada}/profiles")).await).await;
    assert_eq!(of_ada["items"].as_array().map(Vec::len), Some(2));
    let suggested = body(api.get("/api/users/suggested").await).await;
    let suggested: Vec<&str> = suggested["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    assert_eq!(
        suggested,
        vec![ada.to_string().as_str()],
        "only Ada is bound to two profiles"
    );

    assert_eq!(
        api.delete(&format!("/api/profiles/{r2}/members/{ada}"))
            .await
            .status(),
        204
    );
    expect_error(
        api.delete(&format!("/api/profiles/{r2}/members/{ada}"))
            .await,
        404,
        "not_bound",
    )
    .await;
    assert!(
        body(api.get("/api/users/suggested").await).await["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );

    let list = body(api.get("/api/profiles").await).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        api.delete(&format!("/api/profiles/{r1}")).await.status(),
        204
    );
    expect_error(
        api.get(&format!("/api/profiles/{r1}/members")).await,
        404,
        "not_found",
    )
    .await;
    assert_eq!(
        body(api.get(&format!("/api/users/{bob}/profiles")).await).await["items"],
        json!([])
    );
}

/// The offset of a position (`1234-9f3a2c1d`).
fn offset_of(position: &Value) -> u64 {
    let text = position.as_str().expect("a position");
    let (offset, check) = text.split_once('-').expect("offset-check");
    assert_eq!(check.len(), 8, "{text}");
    offset.parse().expect("an offset")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_in_position_order_and_pages_both_ways() {
    let stack = Stack::start(1).await;
    let profile = stack.create_profile("Room").await;
    let user = stack.member_of(&[profile]).await;
    let client = stack.client();
    client.login(user).await;
    let mut sent = Vec::new();
    for i in 0..7 {
        let reply = body(
            client
                .post_json(
                    &format!("/live/{profile}/messages"),
                    &json!({"body": format!("m{i}")}),
                )
                .await,
        )
        .await;
        sent.push(reply["id"].as_str().expect("id").to_owned());
    }
    // History is written by the persistence consumer: wait until it has all.
    let path = format!("/api/profiles/{profile}/messages?limit=4");
    let mut page = body(client.get(&path).await).await;
    for _ in 0..100 {
        if page["items"].as_array().is_some_and(|items| {
            items.first().and_then(|m| m["id"].as_str()) == sent.last().map(String::as_str)
        }) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        page = body(client.get(&path).await).await;
    }
    let bodies = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|m| m["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(bodies(&page), vec!["m6", "m5", "m4", "m3"]);
    assert_eq!(page["items"][0]["sender_id"], user.to_string());
    let before = page["next_before"].as_str().expect("more pages");
    assert_eq!(
        before, page["items"][3]["position"],
        "the last item's position"
    );
    let older = body(
        client
            .get(&format!(
                "/api/profiles/{profile}/messages?limit=4&before={before}"
            ))
            .await,
    )
    .await;
    assert_eq!(bodies(&older), vec!["m2", "m1", "m0"]);
    assert!(older["next_before"].is_null());
    let newest_first: Vec<u64> = [&page, &older]
        .iter()
        .flat_map(|p| p["items"].as_array().expect("items"))
        .map(|m| offset_of(&m["position"]))
        .collect();
    assert!(
        newest_first.windows(2).all(|w| w[0] > w[1]),
        "positions decrease: {newest_first:?}"
    );

    // Oldest first from a position on (a client catching up after a gap).
    let m0 = older["items"][2]["position"].as_str().expect("position");
    let newer = body(
        client
            .get(&format!(
                "/api/profiles/{profile}/messages?limit=4&after={m0}"
            ))
            .await,
    )
    .await;
    assert_eq!(bodies(&newer), vec!["m1", "m2", "m3", "m4"]);
    assert!(newer.get("next_before").is_none(), "{newer}");
    let after = newer["next_after"].as_str().expect("more pages");
    assert_eq!(after, newer["items"][3]["position"]);
    let newest = body(
        client
            .get(&format!(
                "/api/profiles/{profile}/messages?limit=4&after={after}"
            ))
            .await,
    )
    .await;
    assert_eq!(bodies(&newest), vec!["m5", "m6"]);
    assert!(newest["next_after"].is_null());
    assert_eq!(
        newest["items"][1], page["items"][0],
        "the same item both ways"
    );
    // Both bounds: what lies between, oldest first.
    let m5 = newest["items"][0]["position"].as_str().expect("position");
    let between = body(
        client
            .get(&format!(
                "/api/profiles/{profile}/messages?after={m0}&before={m5}"
            ))
            .await,
    )
    .await;
    assert_eq!(bodies(&between), vec!["m1", "m2", "m3", "m4"]);
    assert!(between["next_after"].is_null(), "{between}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_data_is_made_and_dropped() {
    let stack = Stack::start(1).await;
    let api = stack.server();
    let real = stack.create_user("Real").await;
    let made = api
        .post_json("/api/testdata", &json!({"users": 40, "profiles": 6}))
        .await;
    assert_eq!(made.status(), 201);
    let made = body(made).await;
    assert_eq!(made["users"].as_array().map(Vec::len), Some(40));
    assert_eq!(made["profiles"].as_array().map(Vec::len), Some(6));
    let bindings = made["bindings"].as_u64().expect("bindings");
    assert!((40..=120).contains(&bindings), "{bindings}");
    let suggested = body(api.get("/api/users/suggested?limit=200").await).await;
    assert!(
        !suggested["items"].as_array().expect("items").is_empty(),
        "some test users are bound to 2+ profiles"
    );
    let some_user = made["users"][0].as_str().expect("id");
    let profiles = body(api.get(&format!("/api/users/{some_user}/profiles")).await).await;
    assert!(
        !profiles["items"].as_array().expect("items").is_empty(),
        "every test user is bound"
    );

    let dropped = body(api.delete("/api/testdata").await).await;
    assert_eq!(dropped, json!({"users": 40, "profiles": 6}));
    let users = body(api.get("/api/users?limit=200").await).await;
    let ids: Vec<&str> = users["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["id"].as_str())
        .collect();
    assert_eq!(
        ids,
        vec![real.to_string().as_str()],
        "only the real user is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_4xx_errors() {
    let stack = Stack::start(1).await;
    let api: Client = stack.server();
    let user = stack.create_user("Ada").await;
    let profile = stack.create_profile("Room").await;
    let ghost = Uuid::new_v4();
    let long = "x".repeat(101);

    let cases = vec![
        (
            api.post_raw("/api/users", "application/json", "{").await,
            400,
            "bad_json",
        ),
        (
            api.post_raw("/api/users", "text/plain", r#"{"name":"a"}"#)
                .await,
            415,
            "not_json",
        ),
        (
            api.post_json("/api/users", &json!({"name": ""})).await,
            400,
            "bad_name",
        ),
        (
            api.post_json("/api/users", &json!({"name": long})).await,
            400,
            "bad_name",
        ),
        (
            api.post_json("/api/users", &json!({"name": "a", "admin": true}))
                .await,
            400,
            "bad_json",
        ),
        (
            api.post_json("/api/profiles", &json!({"title": "a"})).await,
            400,
            "bad_json",
        ),
        (
            api.post_raw("/api/profiles", "application/json", "x".repeat(70_000))
                .await,
            413,
            "request_too_large",
        ),
        (api.get("/api/users/not-a-uuid").await, 400, "bad_id"),
        (
            api.get(&format!("/api/users/{ghost}")).await,
            404,
            "not_found",
        ),
        (
            api.get(&format!("/api/users/{ghost}/profiles")).await,
            404,
            "not_found",
        ),
        (
            api.get(&format!("/api/profiles/{ghost}")).await,
            404,
            "not_found",
        ),
        (
            api.delete(&format!("/api/profiles/{ghost}")).await,
            404,
            "not_found",
        ),
        (api.get("/api/users?limit=0").await, 400, "bad_query"),
        (api.get("/api/users?limit=abc").await, 400, "bad_query"),
        (api.get("/api/users?limit=100000").await, 400, "over_limit"),
        (api.get("/api/users?after=zzz").await, 400, "bad_id"),
        (api.get("/api/users?colour=red").await, 400, "bad_query"),
        (api.get("/api/profiles?limit=-5").await, 400, "bad_query"),
        (
            api.put(&format!("/api/profiles/{profile}/members/{ghost}"))
                .await,
            404,
            "not_found",
        ),
        (
            api.put(&format!("/api/profiles/{ghost}/members/{user}"))
                .await,
            404,
            "not_found",
        ),
        (
            api.put(&format!("/api/profiles/{profile}/members/bad"))
                .await,
            400,
            "bad_id",
        ),
        (
            api.delete(&format!("/api/profiles/{profile}/members/{user}"))
                .await,
            404,
            "not_bound",
        ),
        (
            api.get(&format!("/api/profiles/{profile}/messages?before=nope"))
                .await,
            400,
            "bad_query",
        ),
        (
            api.get(&format!(
                "/api/profiles/{profile}/messages?after=018f3a2c-1d2e-7000-8000-000000000000"
            ))
            .await,
            400,
            "bad_query",
        ),
        (
            api.get(&format!("/api/profiles/{ghost}/messages")).await,
            404,
            "not_found",
        ),
        (
            api.post_json("/api/testdata", &json!({"users": 1_000_000, "profiles": 1}))
                .await,
            400,
            "over_limit",
        ),
        (
            api.post_json("/api/testdata", &json!({"users": 5, "profiles": 0}))
                .await,
            400,
            "validation_failed",
        ),
        (
            api.post_json("/api/testdata", &json!({"users": "many", "profiles": 1}))
                .await,
            400,
            "bad_json",
        ),
        (api.get("/api/nothing-here").await, 404, "not_found"),
        (api.put("/api/users").await, 405, "method_not_allowed"),
    ];
    for (response, status, code) in cases {
        expect_error(response, status, code).await;
    }
}

/// A body that is not JSON, or not of the request's shape, is `bad_json`;
/// JSON of the right shape with a value that breaks a rule is
/// `validation_failed`, and the message names the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_a_rule_is_not_bad_json() {
    let stack = Stack::start(1).await;
    let api: Client = stack.server();
    let user = stack.create_user("Ada").await;
    let profile = stack.create_profile("Room").await;
    let to_profile = format!("/api/profiles/{profile}/publish");
    let to_profile = to_profile.as_str();
    let to_user = format!("/api/users/{user}/publish");
    let to_user = to_user.as_str();
    let testdata = "/api/testdata";

    let breaks_a_rule = [
        (to_profile, json!({"event": "", "data": 1}), "event"),
        (
            to_profile,
            json!({"event": "has space", "data": 1}),
            "event",
        ),
        (
            to_profile,
            json!({"event": "x".repeat(65), "data": 1}),
            "event",
        ),
        (to_user, json!({"event": "", "data": 1}), "event"),
        (to_user, json!({"event": "a/b", "data": 1}), "event"),
        (testdata, json!({"users": 5, "profiles": 0}), "profiles"),
    ];
    for (path, request, field) in breaks_a_rule {
        let response = api.post_json(path, &request).await;
        assert_eq!(response.status(), 400, "{path} {request}");
        let reply = body(response).await;
        assert_eq!(
            reply["error"], "validation_failed",
            "{path} {request}: {reply}"
        );
        assert!(
            reply["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("{field} "))),
            "the message names the field: {path} {request}: {reply}"
        );
    }

    let not_json = [to_profile, to_user, testdata].map(|path| (path, "{".to_owned()));
    let wrong_shape = [
        (to_profile, json!({"event": "x"})),
        (to_profile, json!({"event": 7, "data": 1})),
        (to_user, json!({"event": "x", "data": 1, "extra": true})),
        (testdata, json!({"users": -1, "profiles": 1})),
    ]
    .map(|(path, request)| (path, request.to_string()));
    for (path, request) in not_json.into_iter().chain(wrong_shape) {
        let response = api.post_raw(path, "application/json", request).await;
        expect_error(response, 400, "bad_json").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_can_open_the_profile_right_away() {
    // Read-your-writes: the api answers a write once the store shows it, and
    // the edge asks the store when its cache does not know the member.
    let stack = Stack::start(2).await;
    for _ in 0..5 {
        let profile = stack.create_profile("Fresh").await;
        let user = stack.create_user("Newcomer").await;
        stack.bind(user, profile).await;
        let client = stack.client();
        client.login(user).await;
        let mut ws = client.ws(profile).await;
        assert_eq!(
            ws.next_of_type("ready").await["profile_id"],
            profile.to_string()
        );
        drop(ws); // one live session per user and profile
        let mut sse = client.sse(profile).await;
        sse.next_of_type("ready").await;
    }
}
