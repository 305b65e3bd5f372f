//! An attacker's test suite: every way of acting as somebody else that the
//! design closes, tried against a whole stack through Traefik. Who may call
//! what is `rill_api::routes::ROUTES`; the threat model is in
//! docs/ARCHITECTURE.md ("Identity").

use std::time::{Duration, Instant, SystemTime};

use rill_api::access::Rule;
use rill_api::routes::ROUTES;
use rill_domain::{LoginId, UserId};
use rill_runtime::Secret;
use rill_runtime::session_cookie::{CookieSession, SessionCookies, SessionSettings};
use rill_testkit::stack::{TEST_COOKIE_KEY, TEST_TOKEN_SECRET};
use rill_testkit::{Client, Stack, test_token};
use serde_json::{Value, json};
use uuid::Uuid;

const PASSWORD: &str = "correct horse battery";

/// The error code of a JSON error answer.
async fn code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Calls `method path` (ids filled in) as `client`, with a JSON body for
/// the methods that take one.
async fn call(
    client: &Client,
    method: &str,
    path: &str,
    user: Uuid,
    profile: Uuid,
) -> (u16, String) {
    let path = path
        .replace("{user_id}", &user.to_string())
        .replace("{profile_id}", &profile.to_string());
    let response = match method {
        "GET" => client.get(&path).await,
        "PUT" => client.put(&path).await,
        "DELETE" => client.delete(&path).await,
        "POST" => client.post_json(&path, &json!({"name": "x"})).await,
        other => panic!("no {other} in the routes"),
    };
    code(response).await
}

/// A client logged in with `name`'s password through the api.
async fn logged_in(stack: &Stack, name: &str) -> Client {
    let client = stack.client();
    let response = client
        .post_json("/api/login", &json!({"name": name, "password": PASSWORD}))
        .await;
    assert_eq!(response.status(), 200, "{:?}", response.text().await);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_strangers_and_users_where_only_a_server_may_call() {
    let stack = Stack::start(1).await;
    let ada = stack.sign_up("Ada", PASSWORD).await;
    let room = stack.create_profile("Room").await;
    let stranger = stack.client();
    let as_ada = logged_in(&stack, "Ada").await;
    let mut wrong = Vec::new();
    for (method, path, rule) in ROUTES {
        if *rule == Rule::Anyone {
            continue;
        }
        let (status, code) = call(&stranger, method, path, ada, room).await;
        if (status, code.as_str()) != (401, "unauthenticated") {
            wrong.push(format!(
                "{method} {path} without credentials: {status} {code}"
            ));
        }
        if *rule == Rule::Server {
            let (status, code) = call(&as_ada, method, path, ada, room).await;
            if (status, code.as_str()) != (403, "forbidden") {
                wrong.push(format!(
                    "{method} {path} with a user's cookie: {status} {code}"
                ));
            }
        }
        let bad_key = stack.client().with_api_key("rk_not-a-key");
        let (status, code) = call(&bad_key, method, path, ada, room).await;
        if (status, code.as_str()) != (401, "bad_api_key") {
            wrong.push(format!(
                "{method} {path} with a wrong API key: {status} {code}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reads_only_their_own_profiles_and_rooms() {
    let stack = Stack::start(1).await;
    let ada = stack.sign_up("Ada", PASSWORD).await;
    let bob = stack.sign_up("Bob", PASSWORD).await;
    let (ours, theirs) = (
        stack.create_profile("Ours").await,
        stack.create_profile("Theirs").await,
    );
    stack.bind(ada, ours).await;
    stack.bind(bob, theirs).await;
    let as_ada = logged_in(&stack, "Ada").await;

    for (path, expected) in [
        (format!("/api/profiles/{ours}/messages"), (200, "")),
        (
            format!("/api/profiles/{theirs}/messages"),
            (403, "forbidden"),
        ),
        (format!("/api/profiles/{theirs}"), (403, "forbidden")),
        (
            format!("/api/profiles/{theirs}/members"),
            (403, "forbidden"),
        ),
        (format!("/api/users/{ada}/profiles"), (200, "")),
        (format!("/api/users/{bob}/profiles"), (403, "forbidden")),
        (format!("/api/users/{bob}/launched"), (403, "forbidden")),
        (format!("/api/users/{bob}"), (200, "")),
    ] {
        let (status, code) = code(as_ada.get(&path).await).await;
        assert_eq!((status, code.as_str()), expected, "GET {path}");
    }
    // The edge too: no stream and no send where Ada is not a member.
    let (status, _) = as_ada
        .try_sse(&format!("/live/{theirs}/sse"), &[])
        .await
        .expect_err("refused");
    assert_eq!(status, 403);
    let sent = as_ada
        .post_json(&format!("/live/{theirs}/messages"), &json!({"body": "hi"}))
        .await;
    assert_eq!(code(sent).await, (403, "not_a_member".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_foreign_cookies_and_tokens_are_refused() {
    let stack = Stack::start(1).await;
    let ada = stack.sign_up("Ada", PASSWORD).await;
    let room = stack.create_profile("Room").await;
    stack.bind(ada, room).await;
    let me = "/api/me";

    let real = logged_in(&stack, "Ada").await;
    assert_eq!(real.get(me).await.status(), 200);
    let value = real.cookie("rill_session").expect("a session cookie");

    let tampered = stack.client();
    tampered.set_cookie("rill_session", &value.replacen('v', "w", 1));
    let forged = stack.client();
    forged.set_cookie(
        "rill_session",
        &format!("v2.{ada}.{}.99999999999", LoginId::random()),
    );
    let key = |key: &str| {
        SessionCookies::new(&SessionSettings {
            cookie_key: Some(Secret::new(key)),
            ..SessionSettings::default()
        })
        .expect("cookie settings")
    };
    let session = CookieSession {
        user: UserId::from_uuid(ada),
        login: LoginId::random(),
    };
    let cookie_of = |set_cookie: String| {
        let client = stack.client();
        let pair = set_cookie.split(';').next().expect("name=value").to_owned();
        let (name, value) = pair.split_once('=').expect("name=value");
        client.set_cookie(name, value);
        client
    };
    let other_key =
        cookie_of(key(&TEST_COOKIE_KEY.replace('t', "x")).issue(session, SystemTime::now()));
    let expired = cookie_of(key(TEST_COOKIE_KEY).issue(
        session,
        SystemTime::now() - Duration::from_secs(8 * 24 * 3600),
    ));
    let never_logged_in = cookie_of(key(TEST_COOKIE_KEY).issue(session, SystemTime::now()));
    for (who, client, expected) in [
        ("tampered", &tampered, "invalid_session"),
        ("forged", &forged, "invalid_session"),
        ("signed with another key", &other_key, "invalid_session"),
        ("expired", &expired, "session_expired"),
        (
            "of a login that never was",
            &never_logged_in,
            "session_ended",
        ),
    ] {
        assert_eq!(
            code(client.get(me).await).await,
            (401, expected.to_owned()),
            "{who} cookie on the api"
        );
        let (status, body) = client
            .try_sse(&format!("/live/{room}/sse"), &[])
            .await
            .expect_err("refused");
        assert_eq!(status, 401, "{who} cookie on the edge: {body}");
    }

    // Connection tokens at the edge.
    let exp = |from_now: i64| (rill_runtime::clock::now_ms() / 1000) as i64 + from_now;
    let sign = |secret: &str, kid: &str, claims: Value| {
        rill_auth::token::sign_hs256(Some(kid), secret.as_bytes(), &claims)
    };
    let other_secret = "another-secret-another-secret-another-secret";
    for (what, token, expected) in [
        ("valid", test_token(ada), ""),
        (
            "expired",
            sign(
                TEST_TOKEN_SECRET,
                "test",
                json!({"sub": ada, "exp": exp(-3600)}),
            ),
            "token_expired",
        ),
        (
            "signed with another secret",
            sign(other_secret, "test", json!({"sub": ada, "exp": exp(600)})),
            "token_bad_signature",
        ),
        (
            "of an unknown key",
            sign(
                TEST_TOKEN_SECRET,
                "nope",
                json!({"sub": ada, "exp": exp(600)}),
            ),
            "token_unknown_key",
        ),
        (
            "with no exp",
            sign(TEST_TOKEN_SECRET, "test", json!({"sub": ada})),
            "token_malformed",
        ),
        ("not a token", "a.b.c".to_owned(), "token_malformed"),
    ] {
        let client = stack.client().with_token(&token);
        let opened = client.try_sse(&format!("/live/{room}/sse"), &[]).await;
        match (expected, opened) {
            ("", Ok(_)) => {}
            ("", Err((status, body))) => panic!("a {what} token was refused: {status} {body}"),
            (_, Ok(_)) => panic!("a token {what} opened a stream"),
            (code, Err((status, body))) => {
                assert_eq!(status, 401, "{what}: {body}");
                assert!(body.contains(code), "{what}: {body}");
                assert!(!body.contains(&token), "the answer does not echo the token");
            }
        }
    }

    // A token limited to other profiles does not open this one.
    let limited = sign(
        TEST_TOKEN_SECRET,
        "test",
        json!({"sub": ada, "exp": exp(600), "profiles": [Uuid::new_v4()]}),
    );
    let refused = stack
        .client()
        .with_token(&limited)
        .try_sse(&format!("/live/{room}/sse"), &[])
        .await;
    let (status, body) = refused.expect_err("refused");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("token_profile_not_allowed"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_cannot_act_with_the_cookie() {
    let stack = Stack::start(1).await;
    let ada = stack.sign_up("Ada", PASSWORD).await;
    let room = stack.create_profile("Room").await;
    stack.bind(ada, room).await;
    let page = logged_in(&stack, "Ada").await;
    let cookie = page.cookie_header();
    let http = reqwest::Client::new();
    let base = stack.traefik.url();
    for (origin, path, body) in [
        ("https://evil.example", "/api/logout", json!({})),
        ("null", "/api/logout/everywhere", json!({})),
        (
            "https://evil.example",
            &*format!("/live/{room}/messages"),
            json!({"body": "x"}),
        ),
    ] {
        let response = http
            .post(format!("{base}{path}"))
            .header("cookie", &cookie)
            .header("origin", origin)
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 403, "POST {path} from {origin}");
    }
    let no_origin = http
        .post(format!("{base}/live/{room}/messages"))
        .header("cookie", &cookie)
        .json(&json!({"body": "x"}))
        .send()
        .await
        .expect("request");
    assert_eq!(no_origin.status(), 403, "a cookie send without an Origin");
    assert_eq!(page.get("/api/me").await.status(), 200, "still logged in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_ends_the_login_s_streams_and_only_theirs() {
    let stack = Stack::start(2).await;
    let ada = stack.sign_up("Ada", PASSWORD).await;
    let (one, two) = (
        stack.create_profile("One").await,
        stack.create_profile("Two").await,
    );
    stack.bind(ada, one).await;
    stack.bind(ada, two).await;
    let laptop = logged_in(&stack, "Ada").await;
    let phone = logged_in(&stack, "Ada").await;
    let mut on_laptop = laptop.ws(one).await;
    on_laptop.next_of_type("ready").await;
    let mut on_phone = phone.ws(two).await;
    on_phone.next_of_type("ready").await;

    assert_eq!(
        laptop.post_json("/api/logout", &json!({})).await.status(),
        204
    );
    let ended = on_laptop.next_of_type("error").await;
    assert_eq!(ended["code"], "session_ended");
    let close = on_laptop.closed().await.expect("a close frame");
    assert_eq!(u16::from(close.code), 4401);
    assert_eq!(
        laptop.get("/api/me").await.status(),
        401,
        "the cookie is cleared"
    );

    // The phone's login goes on.
    on_phone
        .send(&json!({"type": "send", "body": "still here", "ref": "p"}))
        .await;
    assert_eq!(on_phone.next_of_type("ack").await["ref"], "p");

    assert_eq!(
        phone
            .post_json("/api/logout/everywhere", &json!({}))
            .await
            .status(),
        204
    );
    assert_eq!(
        on_phone.next_of_type("error").await["code"],
        "session_ended"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_cookie_stops_working_when_its_owner_logs_out() {
    let stack = Stack::start(1).await;
    stack.sign_up("Ada", PASSWORD).await;
    let owner = logged_in(&stack, "Ada").await;
    let thief = stack.client();
    let stolen = owner.cookie("rill_session").expect("cookie");
    thief.set_cookie("rill_session", &stolen);
    assert_eq!(thief.get("/api/me").await.status(), 200, "a copy works...");
    assert_eq!(
        owner.post_json("/api/logout", &json!({})).await.status(),
        204
    );
    assert_eq!(
        code(thief.get("/api/me").await).await,
        (401, "session_ended".to_owned()),
        "...until the owner logs out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_answer_alike_and_are_rate_limited() {
    let stack = Stack::start(1).await;
    stack.sign_up("Ada", PASSWORD).await;
    let client = stack.client();
    let attempt = |name: &'static str, password: &'static str| {
        let client = &client;
        async move {
            client
                .post_json("/api/login", &json!({"name": name, "password": password}))
                .await
        }
    };
    let unknown = attempt("Nobody", "whatever-password").await;
    let unknown = (unknown.status(), unknown.text().await.expect("body"));
    let wrong = attempt("Ada", "wrong-password").await;
    let wrong = (wrong.status(), wrong.text().await.expect("body"));
    assert_eq!(unknown.0, 401);
    assert_eq!(
        unknown, wrong,
        "an unknown name and a wrong password answer alike"
    );

    // The account's limit (default 5 failures in the window): the next
    // attempt is refused, even with the right password.
    let started = Instant::now();
    let mut refused = None;
    for _ in 0..10 {
        let response = attempt("ada", "wrong-password").await;
        if response.status() == 429 {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), 401);
    }
    let refused = refused.expect("429 within 10 more failures");
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(retry_after > 0 && retry_after <= 300, "{retry_after}");
    assert_eq!(code(refused).await.1, "rate_limited");
    let right = attempt("Ada", PASSWORD).await;
    assert_eq!(right.status(), 429, "locked, right password or not");
    assert!(started.elapsed() < Duration::from_secs(60));

    // Other accounts are not locked by Ada's.
    stack.sign_up("Bob", PASSWORD).await;
    assert_eq!(attempt("Bob", PASSWORD).await.status(), 200);
}

/// Sign-ups from one client address past `limits.signups_per_address`
/// (10 at once by default, then one per 10 s) get 429 with `Retry-After`
/// before any work is done (refused ones count: each costs a parse, a
/// valid one a password hash); another address is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ups_from_one_address_are_rate_limited() {
    let stack = Stack::start(1).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/signup", stack.api);
    let sign_up = |address: &'static str, name: &'static str| {
        let request = http
            .post(&url)
            .header("x-forwarded-for", address)
            .json(&json!({"name": name, "password": PASSWORD}));
        async move { request.send().await.expect("sign-up") }
    };
    // Ten cheap ones (a bad name: refused after the limit, before a hash).
    for _ in 0..10 {
        assert_eq!(sign_up("203.0.113.7", "").await.status(), 400);
    }
    let refused = sign_up("203.0.113.7", "Ada").await;
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    let body: Value = refused.json().await.expect("a JSON error");
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(
        sign_up("203.0.113.8", "Ada").await.status(),
        201,
        "another address has its own bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_takes_a_name_once_and_rules_passwords() {
    let stack = Stack::start(1).await;
    let client = stack.client();
    let sign_up = |name: &'static str, password: &'static str| {
        let client = &client;
        async move {
            code(
                client
                    .post_json("/api/signup", &json!({"name": name, "password": password}))
                    .await,
            )
            .await
        }
    };
    assert_eq!(sign_up("Ada", PASSWORD).await.0, 201);
    assert_eq!(
        sign_up(" ADA ", PASSWORD).await,
        (409, "name_taken".to_owned())
    );
    assert_eq!(
        sign_up("Bob", "short").await,
        (400, "password_too_short".to_owned())
    );
    assert_eq!(
        sign_up("Bob", "pass\u{0}word-long").await,
        (400, "password_invalid".to_owned())
    );
    assert_eq!(sign_up("", PASSWORD).await, (400, "bad_name".to_owned()));
    // Test data is a server's, and off unless the settings turn it on.
    let as_user = stack.client();
    as_user
        .post_json("/api/login", &json!({"name": "Ada", "password": PASSWORD}))
        .await;
    let testdata = as_user
        .post_json("/api/testdata", &json!({"users": 1, "profiles": 1}))
        .await;
    assert_eq!(testdata.status(), 403);
}
