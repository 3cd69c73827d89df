//! The careful device lifecycle the provider relies on: create without leaking a
//! half-created device, wait for `active` within a deadline, delete until really gone.

use tokio::time::{Instant, timeout_at};
use tracing::{info, warn};

use super::api::{Device, DeviceCreateInput, DeviceState};
use super::client::MetalClient;
use super::error::MetalError;
use crate::retry::Next;

impl MetalClient {
    /// Creates a device, surviving the API's flaky 500s without leaking a device.
    ///
    /// A 5xx or a lost connection on create does not say whether the device exists. So after
    /// one, the devices tagged `run_tag` are listed: a device with the same hostname is the
    /// half-created one, and it is adopted; otherwise the create is sent again (up to the
    /// retry policy's attempts). The input must have a hostname, unique within the run, and
    /// `run_tag` is added to its tags when missing.
    pub async fn create_device_safely(
        &self,
        input: &DeviceCreateInput,
        run_tag: &str,
    ) -> Result<Device, MetalError> {
        let hostname = input.hostname.as_deref().ok_or_else(|| {
            MetalError::InvalidInput(
                "create_device_safely needs a hostname to recognise a half-created device".into(),
            )
        })?;
        let mut input = input.clone();
        if !input.tags.iter().any(|tag| tag == run_tag) {
            input.tags.push(run_tag.to_owned());
        }
        let input = &input;
        // A create that fails in a way that may pass is sent again after the policy's wait.
        let (outcome, _) = self
            .retry
            .run(
                |attempt| self.create_once(input, run_tag, hostname, attempt),
                |outcome, _| match outcome {
                    Err(Failure::MayPass(_)) => Next::Retry,
                    _ => Next::Stop,
                },
                |_, _| {},
            )
            .await;
        outcome.map_err(|(Failure::MayPass(error) | Failure::Final(error))| error)
    }

    /// One create; after a failure that may pass, the half-created device, if there is one.
    async fn create_once(
        &self,
        input: &DeviceCreateInput,
        run_tag: &str,
        hostname: &str,
        attempt: u32,
    ) -> Result<Device, Failure> {
        let error = match self.create_device(input).await {
            Ok(device) => return Ok(device),
            Err(error) if error.may_have_acted() => error,
            Err(error) => return Err(Failure::Final(error)),
        };
        warn!(
            hostname,
            attempt, "create failed, looking for a half-created device: {error}"
        );
        match self.find_half_created(run_tag, hostname).await {
            Ok(Some(device)) => {
                info!(hostname, id = %device.id, "adopting the device the failed create made");
                Ok(device)
            }
            // A create whose answer did not read would only fail the same way again; the
            // device it may have made carries the run tag, and release deletes by that tag.
            Ok(None) if error.is_transient() => Err(Failure::MayPass(error)),
            Ok(None) => Err(Failure::Final(error)),
            Err(error) => Err(Failure::Final(error)),
        }
    }

    /// The oldest live device tagged `run_tag` that has `hostname`.
    async fn find_half_created(
        &self,
        run_tag: &str,
        hostname: &str,
    ) -> Result<Option<Device>, MetalError> {
        let mut matching: Vec<Device> = self
            .list_devices(Some(run_tag))
            .await?
            .items
            .into_iter()
            .filter(|device| device.hostname == hostname && !is_going(&device.state))
            .collect();
        // Oldest first; a device without `created_at` after those with one.
        matching.sort_by_key(|device| (device.created_at.is_none(), device.created_at));
        if matching.len() > 1 {
            warn!(
                hostname,
                count = matching.len(),
                "several devices share this hostname and run tag; adopting the oldest, \
                 the sweep by run tag removes the others"
            );
        }
        Ok(matching.into_iter().next())
    }

    /// Polls the device until it is `active`, calling `on_progress` with each look.
    ///
    /// Fails with [`MetalError::DeviceFailed`] when it ends in `failed`, or when the API stops
    /// showing it (403 or 404: what it answers for a device whose provisioning failed), with
    /// the API's own word on why when its events or its error give one; and with
    /// [`MetalError::Deadline`] when `deadline` passes first. Either way the device may still
    /// exist: the caller deletes it.
    pub async fn wait_active(
        &self,
        id: &str,
        deadline: Instant,
        mut on_progress: impl FnMut(&Device),
    ) -> Result<Device, MetalError> {
        let mut polling = self.poll.until(deadline);
        let mut last_state = String::from("unknown");
        loop {
            let Ok(result) = timeout_at(deadline, self.get_device(id)).await else {
                return Err(deadline_passed(id, "active", last_state));
            };
            let device = match result {
                Ok(device) => device,
                Err(error) if error.means_gone() => {
                    let reason = self.failure_reason(id, deadline).await.or_else(|| {
                        error
                            .api_message()
                            .map(|m| format!("the API no longer shows it ({m})"))
                    });
                    return Err(MetalError::DeviceFailed {
                        id: id.into(),
                        reason,
                    });
                }
                Err(error) => return Err(error),
            };
            on_progress(&device);
            match device.state {
                DeviceState::Active => return Ok(device),
                DeviceState::Failed => {
                    return Err(MetalError::DeviceFailed {
                        id: id.into(),
                        reason: self.failure_reason(id, deadline).await,
                    });
                }
                _ => last_state = device.state.to_string(),
            }
            if !polling.pause().await {
                return Err(deadline_passed(id, "active", last_state));
            }
        }
    }

    /// What the device's events say of its failure: the body of the last event about it.
    /// `None` when the events cannot be read or say nothing of it; they are only an
    /// explanation, so nothing fails for want of them.
    async fn failure_reason(&self, id: &str, deadline: Instant) -> Option<String> {
        let events = timeout_at(deadline, self.device_events(id))
            .await
            .ok()?
            .ok()?;
        events
            .items
            .iter()
            .rev()
            .find(|event| {
                !event.body.trim().is_empty()
                    && (event.state == "failed" || event.kind.contains("fail"))
            })
            .map(|event| event.body.trim().to_owned())
    }

    /// Deletes the device and waits until the API no longer shows it.
    ///
    /// The API refuses to delete a device that is still provisioning (422); the delete is
    /// repeated until it is accepted. Then the device is polled until it answers 404 or 403
    /// (the answer for a failed device), or shows `deleted`. A device already gone counts as
    /// deleted, so this is safe to repeat.
    pub async fn delete_device_until_gone(
        &self,
        id: &str,
        deadline: Instant,
    ) -> Result<(), MetalError> {
        if self.delete_when_allowed(id, deadline).await? == Deletion::AlreadyGone {
            return Ok(());
        }
        self.wait_gone(id, deadline).await
    }

    async fn delete_when_allowed(
        &self,
        id: &str,
        deadline: Instant,
    ) -> Result<Deletion, MetalError> {
        let mut polling = self.poll.until(deadline);
        loop {
            let Ok(result) = timeout_at(deadline, self.delete_device(id)).await else {
                return Err(deadline_passed(id, "deleted", "unknown".into()));
            };
            match result {
                Ok(()) => return Ok(Deletion::Accepted),
                Err(error) if error.means_gone() => return Ok(Deletion::AlreadyGone),
                Err(error) if error.is_delete_while_provisioning() => {
                    info!(id, "device still provisioning; the delete will be repeated");
                }
                Err(error) => return Err(error),
            }
            if !polling.pause().await {
                return Err(deadline_passed(id, "deleted", "provisioning".into()));
            }
        }
    }

    async fn wait_gone(&self, id: &str, deadline: Instant) -> Result<(), MetalError> {
        let mut polling = self.poll.until(deadline);
        let mut last_state = String::from("unknown");
        loop {
            let Ok(result) = timeout_at(deadline, self.get_device(id)).await else {
                return Err(deadline_passed(id, "deleted", last_state));
            };
            match result {
                Ok(device) if device.state == DeviceState::Deleted => return Ok(()),
                Ok(device) => last_state = device.state.to_string(),
                Err(error) if error.means_gone() => return Ok(()),
                Err(error) => return Err(error),
            }
            if !polling.pause().await {
                return Err(deadline_passed(id, "deleted", last_state));
            }
        }
    }
}

/// Why a create attempt gave no device.
enum Failure {
    /// A failure that may pass, and no half-created device to adopt: worth another create.
    MayPass(MetalError),
    /// Another create would not fix it.
    Final(MetalError),
}

/// What the API did with a delete request.
#[derive(Debug, PartialEq)]
enum Deletion {
    Accepted,
    AlreadyGone,
}

/// States from which a device never comes back.
fn is_going(state: &DeviceState) -> bool {
    matches!(state, DeviceState::Deprovisioning | DeviceState::Deleted)
}

fn deadline_passed(id: &str, goal: &'static str, last_state: String) -> MetalError {
    MetalError::Deadline {
        id: id.to_owned(),
        goal,
        last_state,
    }
}
