//! A method a known path does not have: 405 with `Allow` listing the ones
//! it has (RFC 9110), through Traefik as a client sees it; an unknown path
//! stays a 404.

use rill_testkit::Stack;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_the_path_does_not_have_is_405_with_allow() {
    let stack = Stack::start(1).await;
    let http = reqwest::Client::new();
    let base = stack.traefik.url();
    let id = Uuid::new_v4();
    let cases = [
        ("PATCH", "/api/users".to_owned(), "POST, GET"),
        ("POST", format!("/api/users/{id}"), "GET, DELETE"),
        ("DELETE", "/api/users/suggested".to_owned(), "GET"),
        (
            "GET",
            format!("/api/profiles/{id}/members/{id}"),
            "PUT, DELETE",
        ),
        ("PUT", "/api/openapi.json".to_owned(), "GET"),
        ("HEAD", "/api/me".to_owned(), "GET"),
    ];
    for (method, path, allow) in cases {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
        let response = http
            .request(method.clone(), format!("{base}{path}"))
            .header("x-api-key", rill_testkit::TEST_API_KEY)
            .send()
            .await
            .expect("the api answers");
        assert_eq!(response.status(), 405, "{method} {path}");
        let allowed = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok());
        assert_eq!(allowed, Some(allow), "{method} {path}");
        if method != reqwest::Method::HEAD {
            let body: serde_json::Value = response.json().await.expect("a JSON error");
            assert_eq!(body["error"], "method_not_allowed", "{method} {path}");
        }
    }

    let unknown = http
        .delete(format!("{base}/api/nothing/here"))
        .send()
        .await
        .expect("the api answers");
    assert_eq!(unknown.status(), 404);
    assert!(unknown.headers().get("allow").is_none());
}
