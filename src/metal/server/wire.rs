//! Request bodies as the server accepts them: the forms in the contract, plus the variants
//! older clients sent (`spot_price_max` as a string, `customdata` as a string, `facility` as
//! an array, `force_delete` in a DELETE body).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// Where a device is to be created.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Metro(String),
    Any,
}

/// A device create request, with the quirks resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub plan: String,
    pub operating_system: String,
    pub location: Location,
    pub hostname: Option<String>,
    pub billing_cycle: Option<String>,
    pub userdata: Option<String>,
    pub tags: Vec<String>,
    pub project_ssh_keys: Vec<String>,
    pub termination_time: Option<DateTime<Utc>>,
    pub spot_instance: Option<bool>,
    pub spot_price_max: Option<f64>,
    pub customdata: Option<Value>,
    pub description: Option<String>,
    pub locked: bool,
}

/// The body as sent, before the quirks are resolved.
#[derive(Deserialize)]
struct RawCreate {
    plan: Option<String>,
    operating_system: Option<String>,
    metro: Option<String>,
    facility: Option<Value>,
    hostname: Option<String>,
    billing_cycle: Option<String>,
    userdata: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    project_ssh_keys: Vec<String>,
    termination_time: Option<DateTime<Utc>>,
    spot_instance: Option<bool>,
    spot_price_max: Option<Value>,
    customdata: Option<Value>,
    description: Option<String>,
    locked: Option<bool>,
}

/// Parses a create body. The error is the list of messages for a 422.
pub fn parse_create(body: &[u8]) -> Result<CreateRequest, Vec<String>> {
    let raw: RawCreate = serde_json::from_slice(body).map_err(|e| vec![e.to_string()])?;
    let mut problems = Vec::new();
    let plan = required(raw.plan, "Plan", &mut problems);
    let operating_system = required(raw.operating_system, "Operating system", &mut problems);
    let location = location(raw.metro, raw.facility.as_ref(), &mut problems);
    let spot_price_max = raw
        .spot_price_max
        .as_ref()
        .and_then(|value| price(value, &mut problems));
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(CreateRequest {
        plan,
        operating_system,
        location,
        hostname: raw.hostname,
        billing_cycle: raw.billing_cycle,
        userdata: raw.userdata,
        tags: raw.tags,
        project_ssh_keys: raw.project_ssh_keys,
        termination_time: raw.termination_time,
        spot_instance: raw.spot_instance,
        spot_price_max,
        customdata: raw.customdata.map(customdata),
        description: raw.description,
        locked: raw.locked.unwrap_or(false),
    })
}

fn required(value: Option<String>, name: &str, problems: &mut Vec<String>) -> String {
    match value {
        Some(value) if !value.trim().is_empty() => value,
        _ => {
            problems.push(format!("{name} can't be blank"));
            String::new()
        }
    }
}

/// `metro` wins; old clients sent `facility`, a string or an array of facility codes such as
/// `["da11", "any"]`. A facility code starts with its metro code, which is what is kept.
fn location(
    metro: Option<String>,
    facility: Option<&Value>,
    problems: &mut Vec<String>,
) -> Location {
    let code = metro.or_else(|| facility.and_then(first_facility).map(metro_of_facility));
    match code.as_deref().map(str::trim) {
        Some("any") => Location::Any,
        Some(code) if !code.is_empty() => Location::Metro(code.to_lowercase()),
        _ => {
            problems.push("Metro can't be blank".to_owned());
            Location::Any
        }
    }
}

fn first_facility(facility: &Value) -> Option<String> {
    match facility {
        Value::String(code) => Some(code.clone()),
        Value::Array(codes) => codes
            .iter()
            .find_map(|code| code.as_str().map(str::to_owned)),
        _ => None,
    }
}

fn metro_of_facility(facility: String) -> String {
    if facility == "any" {
        return facility;
    }
    facility
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .collect()
}

/// A number, or a string holding one.
fn price(value: &Value, problems: &mut Vec<String>) -> Option<f64> {
    let parsed = match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    if parsed.is_none() {
        problems.push(format!("spot_price_max is not a number: {value}"));
    }
    parsed
}

/// An object as given. A string is what old clients sent: JSON text when it parses as JSON,
/// kept as a plain string otherwise.
fn customdata(value: Value) -> Value {
    match value {
        Value::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        other => other,
    }
}

/// Whether a DELETE asked for `force_delete`, in the query string or, as old clients did, in
/// a JSON body.
pub fn force_delete(query: Option<&str>, body: &[u8]) -> bool {
    let in_query = query.is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair == "force_delete=true" || pair == "force_delete")
    });
    let in_body = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|body| body.get("force_delete").and_then(Value::as_bool))
        .unwrap_or(false);
    in_query || in_body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: Value) -> Result<CreateRequest, Vec<String>> {
        parse_create(body.to_string().as_bytes())
    }

    #[test]
    fn the_contract_form_parses() {
        let request = parse(json!({"plan": "p", "operating_system": "os", "metro": "DA",
                                   "spot_price_max": 0.5, "customdata": {"a": 1}}))
        .expect("parses");
        assert_eq!(request.location, Location::Metro("da".into()));
        assert_eq!(request.spot_price_max, Some(0.5));
        assert_eq!(request.customdata, Some(json!({"a": 1})));
    }

    #[test]
    fn old_client_quirks_parse() {
        let request = parse(json!({"plan": "p", "operating_system": "os",
                                   "facility": ["ny5", "any"], "spot_price_max": "1.25",
                                   "customdata": "{\"a\": 1}"}))
        .expect("parses");
        assert_eq!(request.location, Location::Metro("ny".into()));
        assert_eq!(request.spot_price_max, Some(1.25));
        assert_eq!(request.customdata, Some(json!({"a": 1})));
        let any = parse(
            json!({"plan": "p", "operating_system": "os", "facility": "any",
                               "customdata": "not json"}),
        )
        .expect("parses");
        assert_eq!(any.location, Location::Any);
        assert_eq!(any.customdata, Some(json!("not json")));
    }

    #[test]
    fn missing_fields_are_all_reported() {
        let problems = parse(json!({"spot_price_max": "cheap"})).expect_err("rejected");
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[test]
    fn force_delete_is_read_from_query_or_body() {
        assert!(force_delete(Some("force_delete=true"), b""));
        assert!(force_delete(None, br#"{"force_delete": true}"#));
        assert!(!force_delete(Some("force_delete=false"), b"not json"));
    }
}
