//! The edge as a process: settings from the environment, operations
//! endpoints, SIGTERM, refusal of bad settings, and trace export over OTLP.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rill_testkit::Client;
use rill_testkit::broker::Broker;
use rill_testkit::redis::Redis;
use rill_testkit::service::{
    ServiceProcess, assert_refuses_to_start, assert_serves_ops_then_exits_on_sigterm,
};
use rill_testkit::stack::{TEST_COOKIE_KEY, TestStore};
use rill_testkit::{Stack, auth_env};
use serde_json::json;
use warp::Filter;

const BINARY: &str = env!("CARGO_BIN_EXE_edge");

fn env_for(broker: &Broker, redis: &Redis, store: &TestStore) -> Vec<(&'static str, String)> {
    let mut env = broker.env();
    env.extend(store.env());
    env.extend([
        ("RILL_REDIS__URLS", format!("[{}]", redis.url())),
        ("RILL_NODE_ID", "edge-process".into()),
    ]);
    env.extend(auth_env());
    env
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_operations_endpoints_and_exits_cleanly_on_sigterm() {
    let broker = Broker::start().await;
    let store = TestStore::sqlite();
    let redis = Redis::start();
    let env = env_for(&broker, &redis, &store);
    let edge = ServiceProcess::start(Path::new(BINARY), &as_refs(&env));
    assert_serves_ops_then_exits_on_sigterm(edge).await;
}

#[test]
fn refuses_to_start_without_a_cookie_key_outside_dev_mode() {
    assert_refuses_to_start(Path::new(BINARY), &[], "session.cookie_key");
    assert_refuses_to_start(
        Path::new(BINARY),
        &[("RILL_SESSION__COOKIE_KEY", "too-short")],
        "session.cookie_key",
    );
    assert_refuses_to_start(
        Path::new(BINARY),
        &[
            ("RILL_SESSION__COOKIE_KEY", TEST_COOKIE_KEY),
            ("RILL_LIMITS__MAX_CONECTIONS", "5"),
        ],
        "max_conections",
    );
}

/// A stand-in OTLP collector: records the bodies POSTed to `/v1/traces`.
async fn collector() -> (std::net::SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let store = bodies.clone();
    let route = warp::path!("v1" / "traces")
        .and(warp::post())
        .and(warp::body::bytes())
        .map(move |body: bytes::Bytes| {
            store.lock().expect("bodies").push(body.to_vec());
            warp::reply()
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (addr, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_send_and_delivery_spans_over_otlp_when_an_endpoint_is_set() {
    let stack = Stack::start(1).await;
    let (collector, bodies) = collector().await;
    let mut env = env_for(&stack.broker, &stack.redis, &stack.store);
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")));
    let mut edge = ServiceProcess::start(Path::new(BINARY), &as_refs(&env));

    let profile = stack.create_profile("Room").await;
    let client = Client::new(&edge.url());
    client.login(stack.member_of(&[profile]).await).await;
    let mut sse = client.sse(profile).await;
    sse.next_of_type("ready").await;
    let sent = client
        .post_json(
            &format!("/live/{profile}/messages"),
            &json!({"body": "trace me"}),
        )
        .await;
    assert_eq!(sent.status(), 200);
    sse.next_of_type("message").await;
    drop(sse);

    // Shutdown flushes the batch of spans.
    let status = edge.process.terminate(Duration::from_secs(15));
    assert!(status.success(), "{}", edge.process.log());
    let exported = bodies.lock().expect("bodies").concat();
    let contains = |needle: &str| {
        exported
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    };
    assert!(contains("send message"), "the send span was exported");
    assert!(
        contains("deliver message"),
        "the delivery span was exported"
    );
    assert!(contains("rill-edge"), "spans name their service");
}
