//! `MetalClient`: one method per API operation, with auth, retries and pagination.
//!
//! The careful multi-step helpers the provider relies on (create with adoption, delete until
//! gone, wait until active) live in `lifecycle`.

use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{debug, warn};

use super::api::{
    CapacityCheck, CapacityServer, Device, DeviceCreateInput, DeviceList, Event, EventList, Listed,
    Meta, Paged, SshKey, SshKeyCreateInput, SshKeyList, Unreadable, readable_elements,
};
use super::error::MetalError;
use super::retry;
use super::token::ApiToken;
use crate::retry::{Backoff, Next, Poll};

/// The production endpoint. Equinix Metal shut down on 30 June 2026, so in practice this is
/// always overridden with the URL of a server that speaks the same contract.
pub const DEFAULT_BASE_URL: &str = "https://api.equinix.com/metal/v1";

/// Everything a [`MetalClient`] is built from.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The API root, e.g. [`DEFAULT_BASE_URL`]; paths such as `/devices/{id}` are appended.
    pub base_url: String,
    pub token: ApiToken,
    /// The project whose devices and SSH keys the client manages.
    pub project_id: String,
    /// How requests are retried (429, 5xx, lost connections).
    pub retry: Backoff,
    /// How the lifecycle helpers poll a device.
    pub poll: Poll,
    /// Page size for list calls; large, so that a list is usually one request.
    pub per_page: u32,
    /// Limit for one HTTP request, retries not included.
    pub request_timeout: Duration,
}

impl ClientConfig {
    /// A configuration with the production URL and the default policies.
    pub fn new(token: ApiToken, project_id: impl Into<String>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            token,
            project_id: project_id.into(),
            retry: Backoff::default(),
            poll: Poll::METAL_DEVICE,
            per_page: 1000,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// A client for the Metal API v1.
#[derive(Debug, Clone)]
pub struct MetalClient {
    http: reqwest::Client,
    base_url: Url,
    token: ApiToken,
    project_id: String,
    pub(super) retry: Backoff,
    pub(super) poll: Poll,
    per_page: u32,
}

/// One API request, described so that it can be sent again.
#[derive(Clone)]
struct Call {
    method: Method,
    segments: Vec<String>,
    query: Vec<(&'static str, String)>,
    body: Option<serde_json::Value>,
    /// Whether sending it twice is harmless; only then are 5xx and lost connections retried.
    idempotent: bool,
}

impl Call {
    fn new(method: Method, segments: &[&str]) -> Self {
        let idempotent = method != Method::POST;
        Self {
            method,
            segments: segments.iter().map(|s| (*s).to_owned()).collect(),
            query: Vec::new(),
            body: None,
            idempotent,
        }
    }

    fn query(mut self, key: &'static str, value: impl ToString) -> Self {
        self.query.push((key, value.to_string()));
        self
    }

    fn body(mut self, body: &impl Serialize) -> Result<Self, MetalError> {
        let value = serde_json::to_value(body)
            .map_err(|e| MetalError::InvalidInput(format!("request body: {e}")))?;
        self.body = Some(value);
        Ok(self)
    }

    /// Marks a POST that only reads, such as a capacity check, as safe to repeat.
    fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    fn describe(&self) -> String {
        format!("{} /{}", self.method, self.segments.join("/"))
    }
}

/// What one send got back.
struct Answer {
    status: StatusCode,
    /// How long the server asked us to wait, from a 429 or 503.
    hint: Option<Duration>,
    /// Where a 3xx answer pointed, for the error that refuses to go there.
    location: Option<String>,
    body: Vec<u8>,
}

impl MetalClient {
    pub fn new(config: ClientConfig) -> Result<Self, MetalError> {
        let base_url = Url::parse(&config.base_url)
            .map_err(|e| MetalError::InvalidInput(format!("base URL {}: {e}", config.base_url)))?;
        if base_url.cannot_be_a_base() {
            return Err(MetalError::InvalidInput(format!(
                "base URL {} cannot have paths appended",
                config.base_url
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            // Following a redirect would send the token to wherever the answer points: reqwest
            // drops `Authorization` on a cross-host redirect, but not `X-Auth-Token`. Following
            // same-origin ones only would need a policy of our own, for an API that never
            // redirects; so a 3xx is an error that names where it pointed.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| MetalError::InvalidInput(format!("HTTP client: {e}")))?;
        Ok(Self {
            http,
            base_url,
            token: config.token,
            project_id: config.project_id,
            retry: config.retry,
            poll: config.poll,
            per_page: config.per_page.max(1),
        })
    }

    /// `POST /projects/{id}/devices`. Not retried on 5xx: the device may exist anyway.
    /// [`MetalClient::create_device_safely`] handles that case.
    pub async fn create_device(&self, input: &DeviceCreateInput) -> Result<Device, MetalError> {
        let call =
            Call::new(Method::POST, &["projects", &self.project_id, "devices"]).body(input)?;
        self.json(&call).await
    }

    /// `GET /devices/{id}`.
    pub async fn get_device(&self, id: &str) -> Result<Device, MetalError> {
        self.json(&Call::new(Method::GET, &["devices", id])).await
    }

    /// Every device of the project, or only those carrying `tag`; those that cannot be read
    /// come back apart, with what can be made out of them.
    pub async fn list_devices(&self, tag: Option<&str>) -> Result<Listed<Device>, MetalError> {
        let mut call = Call::new(Method::GET, &["projects", &self.project_id, "devices"]);
        if let Some(tag) = tag {
            call = call.query("tag", tag);
        }
        self.list_all::<DeviceList>(call).await
    }

    /// `DELETE /devices/{id}?force_delete=true`. A retried delete whose first try did go
    /// through ends in `NotFound`; [`MetalClient::delete_device_until_gone`] counts that as
    /// success.
    pub async fn delete_device(&self, id: &str) -> Result<(), MetalError> {
        let call = Call::new(Method::DELETE, &["devices", id]).query("force_delete", true);
        self.execute(&call).await.map(drop)
    }

    /// `POST /projects/{id}/ssh-keys`.
    pub async fn create_ssh_key(&self, label: &str, key: &str) -> Result<SshKey, MetalError> {
        let input = SshKeyCreateInput {
            label: label.to_owned(),
            key: key.to_owned(),
        };
        let call =
            Call::new(Method::POST, &["projects", &self.project_id, "ssh-keys"]).body(&input)?;
        self.json(&call).await
    }

    /// Every SSH key of the project, the unreadable ones apart.
    pub async fn list_ssh_keys(&self) -> Result<Listed<SshKey>, MetalError> {
        let call = Call::new(Method::GET, &["projects", &self.project_id, "ssh-keys"]);
        self.list_all::<SshKeyList>(call).await
    }

    /// `DELETE /ssh-keys/{id}`: keys have no per-project delete path.
    pub async fn delete_ssh_key(&self, id: &str) -> Result<(), MetalError> {
        self.execute(&Call::new(Method::DELETE, &["ssh-keys", id]))
            .await
            .map(drop)
    }

    /// `POST /capacity/metros`: the same lines back, each with `available` filled in.
    pub async fn check_capacity(
        &self,
        servers: &[CapacityServer],
    ) -> Result<Vec<CapacityServer>, MetalError> {
        let request = CapacityCheck {
            servers: servers.to_vec(),
        };
        let call = Call::new(Method::POST, &["capacity", "metros"])
            .body(&request)?
            .idempotent();
        /// The answer, without the lines that do not read.
        #[derive(Deserialize)]
        struct Answer {
            #[serde(deserialize_with = "readable_elements")]
            servers: Vec<CapacityServer>,
        }
        let answer: Answer = self.json(&call).await?;
        Ok(answer.servers)
    }

    /// Whether `metro` can take `quantity` more devices of `plan` right now.
    pub async fn has_capacity(
        &self,
        metro: &str,
        plan: &str,
        quantity: u32,
    ) -> Result<bool, MetalError> {
        let asked = CapacityServer {
            metro: metro.to_owned(),
            plan: plan.to_owned(),
            quantity,
            available: None,
        };
        let answer = self.check_capacity(&[asked]).await?;
        Ok(answer.iter().all(|line| line.available == Some(true)) && !answer.is_empty())
    }

    /// `GET /devices/{id}/events`, every page.
    pub async fn device_events(&self, id: &str) -> Result<Listed<Event>, MetalError> {
        let call = Call::new(Method::GET, &["devices", id, "events"]);
        self.list_all::<EventList>(call).await
    }

    /// Fetches a list page by page number until `current_page >= last_page`. The `href`s in
    /// `meta` are never followed: the API made them relative and inconsistent.
    ///
    /// Each element is read on its own: one that does not read is kept apart as
    /// [`Unreadable`] (and logged), and the others are read all the same.
    async fn list_all<L: Paged>(&self, call: Call) -> Result<Listed<L::Item>, MetalError> {
        let mut listed = Listed::default();
        let mut page = 1;
        loop {
            let paged = call
                .clone()
                .query("per_page", self.per_page)
                .query("page", page);
            let meta = self.read_page::<L>(&paged, &mut listed).await?;
            let current = meta.current_page.unwrap_or(page);
            match meta.last_page {
                Some(last) if current < last && page < last => page += 1,
                _ => return Ok(listed),
            }
        }
    }

    /// Reads one page of a list into `listed`, and returns its `meta` (empty when it has none
    /// that reads).
    async fn read_page<L: Paged>(
        &self,
        call: &Call,
        listed: &mut Listed<L::Item>,
    ) -> Result<Meta, MetalError> {
        let mut answer: Value = self.json(call).await?;
        let Some(Value::Array(elements)) = answer.get_mut(L::ITEMS).map(Value::take) else {
            return Err(MetalError::Decode(format!(
                "{}: the answer has no `{}` list",
                call.describe(),
                L::ITEMS
            )));
        };
        for element in elements {
            match serde_json::from_value::<L::Item>(element.clone()) {
                Ok(item) => listed.items.push(item),
                Err(error) => {
                    let odd = Unreadable {
                        raw: self.redacted(element),
                        error: self.token.redact(&error.to_string()),
                    };
                    warn!(request = %call.describe(), "Metal API: {odd}; reading on");
                    listed.unreadable.push(odd);
                }
            }
        }
        Ok(answer
            .get_mut("meta")
            .map(Value::take)
            .and_then(|meta| serde_json::from_value(meta).ok())
            .unwrap_or_default())
    }

    /// `value` with the token replaced, should a server have echoed it.
    fn redacted(&self, value: Value) -> Value {
        let text = value.to_string();
        let clean = self.token.redact(&text);
        if clean == text {
            return value;
        }
        serde_json::from_str(&clean).unwrap_or(Value::Null)
    }

    async fn json<T: DeserializeOwned>(&self, call: &Call) -> Result<T, MetalError> {
        let body = self.execute(call).await?;
        serde_json::from_slice(&body).map_err(|e| {
            MetalError::Decode(self.token.redact(&format!("{}: {e}", call.describe())))
        })
    }

    /// Sends `call`, retrying as the policy allows, and returns the body of a 2xx answer.
    async fn execute(&self, call: &Call) -> Result<Vec<u8>, MetalError> {
        let (outcome, attempts) = self
            .retry
            .run(
                |_| self.send_once(call),
                |outcome, attempt| judge(call, attempt, outcome),
                |attempt, wait| {
                    debug!(request = %call.describe(), attempt, ?wait, "Metal API: retrying");
                },
            )
            .await;
        self.finish(outcome, attempts)
    }

    async fn send_once(&self, call: &Call) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .http
            .request(call.method.clone(), self.url(call))
            .header("X-Auth-Token", self.auth_header())
            .header(ACCEPT, "application/json");
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let hint = matches!(status.as_u16(), 429 | 503)
            .then(|| retry::server_hint(response.headers()))
            .flatten();
        let location = status
            .is_redirection()
            .then(|| response.headers().get(LOCATION))
            .flatten()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = response.bytes().await?.to_vec();
        debug!(request = %call.describe(), status = status.as_u16(), "Metal API answered");
        Ok(Answer {
            status,
            hint,
            location,
            body,
        })
    }

    /// The header value, marked sensitive so that HTTP-level debug output leaves it out.
    fn auth_header(&self) -> HeaderValue {
        match HeaderValue::from_str(self.token.expose()) {
            Ok(mut value) => {
                value.set_sensitive(true);
                value
            }
            // A token with control characters cannot be sent; an empty one gets a clean 401.
            Err(_) => HeaderValue::from_static(""),
        }
    }

    fn url(&self, call: &Call) -> Url {
        let mut url = self.base_url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(&call.segments);
        }
        url
    }

    fn finish(
        &self,
        outcome: Result<Answer, reqwest::Error>,
        attempts: u32,
    ) -> Result<Vec<u8>, MetalError> {
        let answer = outcome.map_err(|e| MetalError::transport(e, attempts, &self.token))?;
        if answer.status.is_success() {
            return Ok(answer.body);
        }
        if answer.status.is_redirection() {
            return Err(MetalError::redirected(
                answer.status,
                answer.location.as_deref(),
                &self.token,
            ));
        }
        Err(MetalError::from_response(
            answer.status,
            &answer.body,
            attempts,
            &self.token,
        ))
    }
}

/// Whether `call` is worth sending again after `outcome`, and after the wait the server asked
/// for, if it did.
fn judge(call: &Call, attempt: u32, outcome: &Result<Answer, reqwest::Error>) -> Next {
    match outcome {
        Ok(answer) if retry::should_retry(answer.status, call.idempotent) => {
            warn!(
                request = %call.describe(),
                status = answer.status.as_u16(),
                attempt,
                "Metal API: transient error"
            );
            answer.hint.map_or(Next::Retry, Next::RetryAfter)
        }
        Err(error) if call.idempotent => {
            warn!(request = %call.describe(), attempt, "Metal API unreachable: {}", error.to_string());
            Next::Retry
        }
        _ => Next::Stop,
    }
}
