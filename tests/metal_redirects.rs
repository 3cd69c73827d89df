//! The Metal client never takes the token anywhere but the configured API: an API answering a
//! redirect, over real HTTP on loopback, points to a second server that records every request
//! it gets, and that server must get nothing.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use metalab::metal::{ApiToken, ClientConfig, MetalClient, MetalError, RetryPolicy};
use tokio::net::TcpListener;

/// Distinctive, so that a leak is easy to spot in any text.
const TOKEN: &str = "tok-redirect-4b9e1d-never-elsewhere";

/// The headers of every request a server got.
type Record = Arc<Mutex<Vec<HeaderMap>>>;

/// Serves `app` on a loopback port; returns its `http://127.0.0.1:port`.
async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A server that answers 200 `{}` to anything, recording each request's headers.
async fn recorder() -> (String, Record) {
    let record = Record::default();
    let seen = record.clone();
    let app = Router::new().fallback(move |headers: HeaderMap| async move {
        seen.lock().unwrap().push(headers);
        "{}"
    });
    (serve(app).await, record)
}

/// An "API" that answers every request with `status` pointing to `location`.
async fn redirecting_api(status: StatusCode, location: String) -> String {
    let app = Router::new().fallback(move || async move { (status, [(LOCATION, location)]) });
    serve(app).await
}

fn client(api: &str) -> MetalClient {
    let mut config = ClientConfig::new(ApiToken::new(TOKEN), "proj-metalab");
    config.base_url = format!("{api}/metal/v1");
    config.retry = RetryPolicy {
        max_attempts: 3,
        base: std::time::Duration::from_millis(5),
        cap: std::time::Duration::from_millis(20),
    };
    MetalClient::new(config).expect("client")
}

/// A GET and a POST (307 and 308 keep the method and body; 301 and 302 may turn a POST into a
/// GET) against an API redirecting with `status`: each fails naming the status and the
/// target, and the target hears nothing.
async fn a_redirect_is_refused_and_its_target_gets_nothing(status: u16) {
    let (target, record) = recorder().await;
    let location = format!("{target}/steal");
    let status = StatusCode::from_u16(status).unwrap();
    let api = client(&redirecting_api(status, location.clone()).await);

    let get = api
        .list_devices(None)
        .await
        .expect_err("a redirect is an error");
    let post = api
        .create_ssh_key("metalab-test", "ssh-ed25519 AAAA")
        .await
        .expect_err("a redirect is an error");

    assert!(
        record.lock().unwrap().is_empty(),
        "the redirect's target got requests: {:?}",
        record.lock().unwrap()
    );
    for error in [get, post] {
        assert!(matches!(error, MetalError::Redirected { .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains(&status.as_u16().to_string()), "{text}");
        assert!(text.contains(&location), "{text}");
        assert!(text.contains("follows no redirects"), "{text}");
        assert!(!text.contains(TOKEN) && !format!("{error:?}").contains(TOKEN));
    }
}

#[tokio::test]
async fn a_301_is_not_followed() {
    a_redirect_is_refused_and_its_target_gets_nothing(301).await;
}

#[tokio::test]
async fn a_302_is_not_followed() {
    a_redirect_is_refused_and_its_target_gets_nothing(302).await;
}

#[tokio::test]
async fn a_307_is_not_followed() {
    a_redirect_is_refused_and_its_target_gets_nothing(307).await;
}

#[tokio::test]
async fn a_308_is_not_followed() {
    a_redirect_is_refused_and_its_target_gets_nothing(308).await;
}

/// A server that knows the token may put it in the `Location`; the error still hides it.
#[tokio::test]
async fn a_location_carrying_the_token_is_shown_redacted() {
    let (target, record) = recorder().await;
    let api = redirecting_api(
        StatusCode::TEMPORARY_REDIRECT,
        format!("{target}/steal?t={TOKEN}"),
    )
    .await;

    let error = client(&api).list_devices(None).await.unwrap_err();

    let text = error.to_string();
    assert!(text.contains(&format!("{target}/steal?t=***")), "{text}");
    assert!(!text.contains(TOKEN), "{text}");
    assert!(record.lock().unwrap().is_empty());
}

/// The recorder does record: a client pointed straight at it reaches it with the token, so an
/// empty record above means nothing was sent, not that nothing could be seen.
#[tokio::test]
async fn the_recorder_sees_a_request_sent_to_it() {
    let (target, record) = recorder().await;
    let _ = client(&target).list_ssh_keys().await;
    let record = record.lock().unwrap();
    assert_eq!(record.len(), 1, "{record:?}");
    assert_eq!(record[0].get("x-auth-token").unwrap(), TOKEN);
}

/// `metalab hosts` against an `api_url` that redirects: bad input (2), a message naming where
/// it pointed, and neither the token in it nor a request at the target.
#[tokio::test]
async fn metalab_hosts_refuses_a_redirecting_api_url_without_printing_the_token() {
    let (target, record) = recorder().await;
    let api = redirecting_api(StatusCode::FOUND, format!("{target}/elsewhere")).await;
    let lab = tempfile::tempdir().unwrap();
    // A lab has a Vagrantfile and a suites directory, even when only its Metal project is used.
    std::fs::write(lab.path().join("Vagrantfile"), "").unwrap();
    std::fs::create_dir(lab.path().join("suites")).unwrap();
    let config = lab.path().join("metalab.toml");
    std::fs::write(
        &config,
        format!(
            "[provider]\nkind = \"metal\"\n[provider.metal]\nproject = \"p\"\nplan = \"c3.small.x86\"\noperating_system = \"debian_12\"\napi_url = \"{api}/metal/v1\"\n"
        ),
    )
    .unwrap();

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_metalab"))
        .arg("--config")
        .arg(&config)
        .arg("hosts")
        .env("METAL_AUTH_TOKEN", TOKEN)
        .output()
        .await
        .unwrap();

    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains(&format!("302 Found pointing to {target}/elsewhere")),
        "{shown}"
    );
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(record.lock().unwrap().is_empty());
}
