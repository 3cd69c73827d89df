//! The API token, kept out of every printed form.

use std::fmt;

/// An Equinix Metal API token.
///
/// `Debug` and `Display` print `***` so that the token cannot leak through a log line, an
/// error message or a `{:?}` of a struct that holds it. Only [`ApiToken::expose`] gives the
/// value, and only the code that sets the `X-Auth-Token` header calls it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiToken(String);

impl ApiToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the auth header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every occurrence of the token in `text` with `***`.
    ///
    /// A server may echo what it received in an error body; this keeps such an echo out of
    /// the errors the client builds from those bodies.
    pub fn redact(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_owned();
        }
        text.replace(&self.0, "***")
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_forms_hide_the_token() {
        let token = ApiToken::new("s3cr3t-token");
        assert_eq!(format!("{token}"), "***");
        assert_eq!(format!("{token:?}"), "***");
        assert_eq!(token.expose(), "s3cr3t-token");
    }

    #[test]
    fn redact_replaces_every_occurrence() {
        let token = ApiToken::new("abc123");
        assert_eq!(
            token.redact("got abc123, want not abc123"),
            "got ***, want not ***"
        );
        assert_eq!(ApiToken::new("").redact("unchanged"), "unchanged");
    }
}
