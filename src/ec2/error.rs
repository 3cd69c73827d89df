//! What an EC2 error means to metalab: refused credentials (the user's to fix), no capacity for
//! one instance type in one place (try the next), a resource already gone, one still in use, or
//! no answer at all (the request may have been acted on).

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

/// An EC2 call that failed, classified.
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// Credentials missing, refused or without permission: exit 2.
    #[error("AWS refused the credentials for {operation} ({detail})")]
    Credentials {
        operation: &'static str,
        detail: String,
    },
    /// The credential chain found none: nothing was sent.
    #[error("no AWS credentials were found ({detail})")]
    NoCredentials { detail: String },
    /// AWS has none of this instance type to give in this place now, or not at all.
    #[error("{code}: {message}")]
    NoCapacity { code: String, message: String },
    /// What the call was about does not exist (any more).
    #[error("{operation}: {code}: {message}")]
    NotFound {
        operation: &'static str,
        code: String,
        message: String,
    },
    /// Something still depends on it (a security group while its instances terminate).
    #[error("{operation}: {code}: {message}")]
    InUse {
        operation: &'static str,
        code: String,
        message: String,
    },
    /// Any other refusal of the API.
    #[error("{operation}: {code}: {message}")]
    Api {
        operation: &'static str,
        code: String,
        message: String,
    },
    /// No readable answer, after the SDK's retries: the request may or may not have been acted
    /// on.
    #[error("{operation}: no answer from EC2: {detail}")]
    NoAnswer {
        operation: &'static str,
        detail: String,
    },
}

/// Codes that mean the caller is not let in: not a fault of the lab's, nor of AWS's.
const CREDENTIAL_CODES: [&str; 8] = [
    "AuthFailure",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "RequestExpired",
    "OptInRequired",
    "Blocked",
];

/// Codes that mean "not this type here, now": the next type or place may have it.
const CAPACITY_CODES: [&str; 7] = [
    "InsufficientInstanceCapacity",
    "InsufficientHostCapacity",
    "InsufficientCapacity",
    "InsufficientReservedInstanceCapacity",
    "InsufficientFreeAddressesInSubnet",
    "Unsupported",
    "SpotMaxPriceTooLow",
];

/// Whether an error code means "not this type here, now".
pub fn is_capacity_code(code: &str) -> bool {
    CAPACITY_CODES.contains(&code)
}

/// Whether the credential chain found nothing to sign with, anywhere in `e`'s causes.
fn credentials_not_loaded(e: &(dyn std::error::Error + 'static)) -> bool {
    use aws_credential_types::provider::error::CredentialsError;
    std::iter::successors(Some(e), |e| e.source()).any(|cause| {
        matches!(
            cause.downcast_ref::<CredentialsError>(),
            Some(CredentialsError::CredentialsNotLoaded(_))
        )
    })
}

impl Ec2Error {
    /// Classifies what the SDK returned for `operation`.
    pub fn from_sdk<E, R>(operation: &'static str, e: SdkError<E, R>) -> Ec2Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let code = e.code().map(str::to_owned);
        let message = e.message().unwrap_or_default().to_owned();
        match (&e, code) {
            (SdkError::ServiceError(_), Some(code)) => Self::of_code(operation, code, message),
            (SdkError::ServiceError(_), None) => Ec2Error::Api {
                operation,
                code: "an unreadable error".into(),
                message: causes(&e),
            },
            (SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_), _)
                if credentials_not_loaded(&e) =>
            {
                // Credentials are resolved before a request is sent: nothing was asked.
                Ec2Error::NoCredentials { detail: causes(&e) }
            }
            (SdkError::ConstructionFailure(_), _) => Ec2Error::Api {
                operation,
                code: "a request that could not be made".into(),
                message: causes(&e),
            },
            _ => Ec2Error::NoAnswer {
                operation,
                detail: causes(&e),
            },
        }
    }

    fn of_code(operation: &'static str, code: String, message: String) -> Ec2Error {
        if CREDENTIAL_CODES.contains(&code.as_str()) {
            Ec2Error::Credentials {
                operation,
                detail: format!("{code}: {message}"),
            }
        } else if is_capacity_code(&code) {
            Ec2Error::NoCapacity { code, message }
        } else if code.ends_with(".NotFound") {
            Ec2Error::NotFound {
                operation,
                code,
                message,
            }
        } else if code == "DependencyViolation" || code == "InvalidGroup.InUse" {
            Ec2Error::InUse {
                operation,
                code,
                message,
            }
        } else {
            Ec2Error::Api {
                operation,
                code,
                message,
            }
        }
    }

    /// The thing is not there: for a delete, as good as done.
    pub fn means_gone(&self) -> bool {
        matches!(self, Ec2Error::NotFound { .. })
    }

    /// The call may have made something although it failed: it was sent, and no refusal came
    /// back.
    pub fn may_have_acted(&self) -> bool {
        matches!(self, Ec2Error::NoAnswer { .. })
    }
}

/// An error and its causes, one after the other, without the SDK's debug dumps; a cause that
/// only repeats the one before is left out.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}
