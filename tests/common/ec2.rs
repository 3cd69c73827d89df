//! A local EC2: `moto` (PyPI's `moto[server]`, an EC2 API metalab did not write), and in front of
//! it a small proxy of the tests' own for what moto cannot show:
//!
//! - faults: no capacity for a type, throttling, an answer lost after the work was done, refused
//!   credentials, each with the status and error document EC2 sends;
//! - EC2's idempotent `RunInstances` (a repeated `ClientToken` answers the first launch), which
//!   moto does not keep;
//! - the instance itself: when a launch succeeds, a real sshd starts on loopback with the host
//!   key the launch's user data gives and the imported key pair let in, as cloud-init would;
//! - addresses: the invented ones moto gives instances are rewritten to 127.0.0.1 before any
//!   client sees them, so nothing ever connects anywhere but loopback.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::sshd::{Sshd, free_port};

/// A moto server on a loopback port, stopped when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]'; .ci/run installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to requests, by EC2 action (`RunInstances`, `DescribeInstances`, ...).
#[derive(Default)]
pub struct Faults {
    /// `RunInstances` of these instance types is refused with this code (a 500, as EC2 does).
    pub no_capacity: HashMap<String, &'static str>,
    /// The next N calls of an action are throttled: `RequestLimitExceeded`, a 503.
    pub throttle: HashMap<String, usize>,
    /// The next N calls of an action are done by moto, and then answered with a 500: the work
    /// is done, its answer lost.
    pub lose_answer: HashMap<String, usize>,
    /// Requests signed with this access key id are refused: `AuthFailure`, a 401.
    pub refused_key_id: Option<String>,
    /// AWS takes each spot instance back right after its launch: it is terminated, and EC2 gives
    /// `Server.SpotInstanceTermination` as the reason.
    pub spot_interruption: bool,
    /// The instance's sshd presents a host key of its own, not the one its user data gives:
    /// another machine answering at the instance's address.
    pub impostor_host_key: bool,
    /// The instance never answers SSH.
    pub silent_instance: bool,
    /// Instances take this long to terminate: until then EC2 says they are `shutting-down`.
    pub slow_termination: Option<std::time::Duration>,
}

/// One `RunInstances` moto carried out.
#[derive(Debug, Clone)]
pub struct Launched {
    pub instance_type: String,
    pub user_data: String,
}

struct State {
    moto: String,
    http: reqwest::Client,
    faults: Mutex<Faults>,
    calls: Mutex<Vec<String>>,
    launches: Mutex<Vec<Launched>>,
    /// The public key of the last key pair imported.
    key_material: Mutex<Option<String>>,
    /// `ClientToken` → the answer of the launch that first used it.
    tokens: Mutex<HashMap<String, Bytes>>,
    /// The port "instances" listen on for SSH, and the sshd of the first one launched.
    ssh_port: u16,
    instance: Mutex<Option<Sshd>>,
    /// Every header and body seen, for tests that look for a secret in them.
    seen: Mutex<Vec<String>>,
    /// Until when terminated instances are still shutting down (`Faults::slow_termination`).
    terminating_until: Mutex<Option<std::time::Instant>>,
    /// Requests received and not yet answered.
    in_flight: std::sync::atomic::AtomicUsize,
}

/// Counts a request as in flight while it lives.
struct InFlight(Arc<State>);

impl InFlight {
    fn new(state: &Arc<State>) -> InFlight {
        state
            .in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The proxy in front of moto: the endpoint metalab is given.
pub struct Ec2Api {
    pub url: String,
    state: Arc<State>,
    _moto: Moto,
}

impl Ec2Api {
    /// moto and the proxy, served on the current tokio runtime; instances answer SSH on
    /// `ssh_port`.
    pub async fn start(ssh_port: u16) -> Ec2Api {
        let moto = Moto::start();
        let state = Arc::new(State {
            moto: moto.url.clone(),
            http: reqwest::Client::new(),
            faults: Mutex::default(),
            calls: Mutex::default(),
            launches: Mutex::default(),
            key_material: Mutex::default(),
            tokens: Mutex::default(),
            ssh_port,
            instance: Mutex::default(),
            seen: Mutex::default(),
            terminating_until: Mutex::default(),
            in_flight: Default::default(),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ec2Api {
            url,
            state,
            _moto: moto,
        }
    }

    pub fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.state.faults.lock().unwrap()
    }

    /// How many requests of `action` reached the proxy.
    pub fn calls(&self, action: &str) -> usize {
        let calls = self.state.calls.lock().unwrap();
        calls.iter().filter(|a| *a == action).count()
    }

    pub fn launches(&self) -> Vec<Launched> {
        self.state.launches.lock().unwrap().clone()
    }

    /// Every request and answer the proxy saw, as text.
    /// Waits until every request received has been carried out and answered: what a client
    /// sent before it died is done by EC2 all the same.
    pub fn settled(&self) {
        let started = std::time::Instant::now();
        while self
            .state
            .in_flight
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "a request hangs"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn seen(&self) -> String {
        self.state.seen.lock().unwrap().join("\n")
    }

    /// The "instance" goes away, its SSH sessions with it, as a host AWS takes back does.
    pub fn stop_instance_sshd(&self) {
        if let Some(sshd) = self.state.instance.lock().unwrap().take() {
            sshd.vanish();
        }
    }

    /// A client straight to moto's `region`, past the proxy: for what the tests check in its
    /// state.
    pub async fn moto_client(&self, region: &str) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&sdk_config(&self._moto.url, region, "AKIDMOTOCHECK").await)
    }
}

/// An SDK configuration for `endpoint` and `region`, with static test credentials of `key_id`
/// and no lookups of anything else (no profile files, no instance metadata).
pub async fn sdk_config(endpoint: &str, region: &str, key_id: &str) -> aws_config::SdkConfig {
    let credentials = aws_sdk_ec2::config::Credentials::new(
        key_id,
        SECRET_ACCESS_KEY,
        None,
        None,
        "metalab-tests",
    );
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_owned()))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await
}

/// The tests' secret access key: it must never appear in anything metalab writes or says.
pub const SECRET_ACCESS_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY-never-printed";

fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
         <Message>{message}</Message></Error></Errors><RequestID>metalab-test-proxy</RequestID></Response>"
    );
    (status, [("content-type", "text/xml;charset=UTF-8")], body).into_response()
}

fn key_id_of(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let credential = auth.split("Credential=").nth(1)?;
    Some(credential.split('/').next()?.to_owned())
}

/// Carries a request out even when its client goes away before the answer, as EC2 does: the
/// server drops a handler whose connection closed, so the work is a task of its own.
async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let in_flight = InFlight::new(&state);
    tokio::spawn(async move {
        let answer = answer(state, headers, body).await;
        drop(in_flight);
        answer
    })
    .await
    .unwrap()
}

async fn answer(state: Arc<State>, headers: HeaderMap, body: Bytes) -> Response {
    let params = form(&body);
    let action = params.get("Action").cloned().unwrap_or_default();
    state.calls.lock().unwrap().push(action.clone());
    state
        .seen
        .lock()
        .unwrap()
        .push(format!("{headers:?}\n{}", String::from_utf8_lossy(&body)));
    let refused = state.faults.lock().unwrap().refused_key_id.clone();
    if refused.is_some() && key_id_of(&headers) == refused {
        return error(
            StatusCode::UNAUTHORIZED,
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
        );
    }
    if take(&mut state.faults.lock().unwrap().throttle, &action) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "RequestLimitExceeded",
            "Request limit exceeded.",
        );
    }
    let token = params.get("ClientToken").cloned();
    if action == "RunInstances" {
        let instance_type = params.get("InstanceType").cloned().unwrap_or_default();
        if let Some(code) = state.faults.lock().unwrap().no_capacity.get(&instance_type) {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                code,
                &format!(
                    "We currently do not have sufficient {instance_type} capacity in the \
                     Availability Zone you requested."
                ),
            );
        }
    }
    if action == "ImportKeyPair"
        && let Some(material) = params.get("PublicKeyMaterial")
    {
        use base64::Engine;
        let key = base64::engine::general_purpose::STANDARD
            .decode(material)
            .ok()
            .and_then(|k| String::from_utf8(k).ok());
        *state.key_material.lock().unwrap() = key;
    }
    // EC2 answers a launch repeated with the same client token with the first one's answer.
    let replay = match (action.as_str(), &token) {
        ("RunInstances", Some(t)) => state.tokens.lock().unwrap().get(t).cloned(),
        _ => None,
    };
    let (status, text) = match replay {
        Some(first) => (200, String::from_utf8_lossy(&first).into_owned()),
        None => {
            let answer = state
                .http
                .post(&state.moto)
                .headers(forwarded(&headers))
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let text = loopback_addresses(&answer.text().await.unwrap());
            let interrupt = state.faults.lock().unwrap().spot_interruption;
            if action == "RunInstances" && status == 200 && interrupt {
                take_back(&state, &headers, &params, &text).await;
            } else if action == "RunInstances" && status == 200 {
                launched(&state, &params, token, &text);
            }
            let slow = state.faults.lock().unwrap().slow_termination;
            if let (true, Some(slow)) = (action == "TerminateInstances" && status == 200, slow) {
                *state.terminating_until.lock().unwrap() = Some(std::time::Instant::now() + slow);
            }
            (status, shutting_down(&state, interrupted(&state, text)))
        }
    };
    if take(&mut state.faults.lock().unwrap().lose_answer, &action) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "An internal error has occurred",
        );
    }
    let mut response = xml(Bytes::from(text));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

/// Counts one down from `action`'s entry; whether it was above zero.
fn take(counts: &mut HashMap<String, usize>, action: &str) -> bool {
    match counts.get_mut(action) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

fn xml(body: Bytes) -> Response {
    ([("content-type", "text/xml;charset=UTF-8")], body).into_response()
}

/// The request's headers, for moto: all but those that name the proxy's own connection.
fn forwarded(headers: &HeaderMap) -> reqwest::header::HeaderMap {
    let mut out = reqwest::header::HeaderMap::new();
    for (name, value) in headers {
        if matches!(name.as_str(), "host" | "content-length" | "connection") {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            reqwest::header::HeaderName::from_bytes(name.as_str().as_bytes()),
            reqwest::header::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out.insert(n, v);
        }
    }
    out
}

/// What AWS does to a spot instance it takes back: terminates it (here, by asking moto, as the
/// launch's own signer).
async fn take_back(
    state: &State,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
    answer: &str,
) {
    let id = answer
        .split("<instanceId>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the launch names its instance");
    let version = params.get("Version").cloned().unwrap_or_default();
    let body = format!("Action=TerminateInstances&Version={version}&InstanceId.1={id}");
    let mut headers = forwarded(headers);
    headers.remove("content-type");
    let answer = state
        .http
        .post(&state.moto)
        .headers(headers)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "moto terminated {id}");
}

/// Once AWS has taken an instance back, EC2 says so as the reason it ended.
fn interrupted(state: &State, text: String) -> String {
    if !state.faults.lock().unwrap().spot_interruption {
        return text;
    }
    text.replace(
        "Client.UserInitiatedShutdown",
        "Server.SpotInstanceTermination",
    )
    .replace("User initiated shutdown", "Spot instance termination")
}

/// moto terminates at once; an instance that takes its time is `shutting-down` (code 32) until
/// it is done.
fn shutting_down(state: &State, text: String) -> String {
    match *state.terminating_until.lock().unwrap() {
        Some(until) if std::time::Instant::now() < until => text
            .replace("<code>48</code>", "<code>32</code>")
            .replace("<name>terminated</name>", "<name>shutting-down</name>"),
        _ => text,
    }
}

/// moto's invented instance addresses, as 127.0.0.1.
fn loopback_addresses(text: &str) -> String {
    let re = regex::Regex::new(r"<(ipAddress|privateIpAddress)>[^<]*</").unwrap();
    re.replace_all(text, "<$1>127.0.0.1</").into_owned()
}

/// Records a launch, remembers its answer under its client token, and boots the "instance":
/// an sshd with the host key of its user data, letting in the imported key.
fn launched(state: &State, params: &HashMap<String, String>, token: Option<String>, answer: &str) {
    use base64::Engine;
    let user_data = params
        .get("UserData")
        .and_then(|u| base64::engine::general_purpose::STANDARD.decode(u).ok())
        .and_then(|u| String::from_utf8(u).ok())
        .unwrap_or_default();
    if let Some(token) = token {
        state
            .tokens
            .lock()
            .unwrap()
            .insert(token, Bytes::from(answer.to_owned()));
    }
    state.launches.lock().unwrap().push(Launched {
        instance_type: params.get("InstanceType").cloned().unwrap_or_default(),
        user_data: user_data.clone(),
    });
    let mut instance = state.instance.lock().unwrap();
    let authorized = state.key_material.lock().unwrap().clone();
    let host_key = match state.faults.lock().unwrap().impostor_host_key {
        true => Some(other_host_key()),
        false => host_key_of(&user_data),
    };
    let silent = state.faults.lock().unwrap().silent_instance;
    if let (None, Some(host_key), Some(authorized), false) =
        (instance.as_ref(), host_key, authorized, silent)
    {
        *instance = Some(Sshd::ec2_instance(&host_key, &authorized, state.ssh_port));
    }
}

/// A host key nobody told metalab about.
fn other_host_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&path)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    std::fs::read_to_string(path).unwrap()
}

/// The `ed25519_private` block of a cloud-config, unindented.
pub fn host_key_of(user_data: &str) -> Option<String> {
    let start = user_data.find("ed25519_private: |\n")? + "ed25519_private: |\n".len();
    let key: String = user_data[start..]
        .lines()
        .take_while(|l| l.starts_with("    "))
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    Some(key).filter(|k| k.contains("PRIVATE KEY"))
}
