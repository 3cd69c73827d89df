//! The EC2 calls metalab makes, through the official SDK, answering in metalab's own types and
//! errors. Throttling and transient faults are retried by the SDK's standard retry strategy,
//! with its backoff; what is left after that is an [`Ec2Error`].

use std::collections::BTreeMap;

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    Filter, HttpTokensState, InstanceInterruptionBehavior, InstanceMarketOptionsRequest,
    InstanceMetadataOptionsRequest, InstanceStateName, IpPermission, IpRange, MarketType,
    ResourceType, ShutdownBehavior, SpotInstanceType, SpotMarketOptions, Tag, TagSpecification,
};
use chrono::{DateTime, Utc};

use aws_sdk_ec2::error::ProvideErrorMetadata;

use super::error::Ec2Error;
use crate::config::Placement;

/// A client for one region (and endpoint).
#[derive(Clone)]
pub struct Ec2 {
    client: aws_sdk_ec2::Client,
}

/// An instance as metalab reads it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    /// Its `Name` tag, or its id.
    pub name: String,
    /// `pending`, `running`, `shutting-down`, `terminated`, ...
    pub state: String,
    /// Why it changed state last, when AWS says (e.g. `Server.SpotInstanceTermination`).
    pub state_reason: Option<String>,
    pub instance_type: String,
    pub public_ip: Option<String>,
    pub private_ip: Option<String>,
    pub launched: Option<DateTime<Utc>>,
    pub tags: BTreeMap<String, String>,
}

/// A key pair or a security group as metalab reads it.
#[derive(Debug, Clone)]
pub struct Tagged {
    pub id: String,
    pub name: String,
    pub created: Option<DateTime<Utc>>,
    pub tags: BTreeMap<String, String>,
}

/// One instance to launch.
pub struct Launch<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub instance_type: &'a str,
    pub placement: &'a Placement,
    pub key_name: &'a str,
    pub security_group: &'a str,
    pub user_data: &'a str,
    pub spot: bool,
    /// Makes a retried launch return the instance the first one made, not a second one.
    pub client_token: &'a str,
    pub tags: &'a BTreeMap<String, String>,
}

fn tags_of(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

fn time_of(t: Option<&aws_sdk_ec2::primitives::DateTime>) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t?.secs(), 0)
}

fn tag_specification(kind: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    tags.iter()
        .fold(
            TagSpecification::builder().resource_type(kind),
            |b, (k, v)| b.tags(Tag::builder().key(k).value(v).build()),
        )
        .build()
}

fn filter(name: &str, values: &[&str]) -> Filter {
    values
        .iter()
        .fold(Filter::builder().name(name), |b, v| b.values(*v))
        .build()
}

impl Instance {
    fn read(i: &aws_sdk_ec2::types::Instance) -> Instance {
        let tags = tags_of(i.tags());
        let id = i.instance_id().unwrap_or_default().to_owned();
        Instance {
            name: tags.get("Name").cloned().unwrap_or_else(|| id.clone()),
            id,
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_owned())
                .unwrap_or_else(|| "unknown".into()),
            state_reason: i
                .state_reason()
                .and_then(|r| r.code().or(r.message()))
                .map(str::to_owned),
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            public_ip: i.public_ip_address().map(str::to_owned),
            private_ip: i.private_ip_address().map(str::to_owned),
            launched: time_of(i.launch_time()),
            tags,
        }
    }

    /// Terminated, or on its way there: nothing more will run on it.
    pub fn is_ending(&self) -> bool {
        matches!(
            self.state.as_str(),
            "shutting-down" | "terminated" | "stopping" | "stopped"
        )
    }
}

impl Ec2 {
    /// A client of the SDK configuration: its credentials, region, endpoint and retries, but
    /// for capacity refusals, which the next type or place answers sooner.
    pub fn new(sdk: &aws_config::SdkConfig) -> Ec2 {
        let config = aws_sdk_ec2::config::Builder::from(sdk)
            .retry_classifier(CapacityIsNotRetried)
            .build();
        Ec2 {
            client: aws_sdk_ec2::Client::from_conf(config),
        }
    }

    /// Registers the public half of the run's key; answers its id.
    pub async fn import_key_pair(
        &self,
        name: &str,
        public_key: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String, Ec2Error> {
        let out = self
            .client
            .import_key_pair()
            .key_name(name)
            .public_key_material(Blob::new(public_key.as_bytes()))
            .tag_specifications(tag_specification(ResourceType::KeyPair, tags))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("ImportKeyPair", e))?;
        Ok(out.key_pair_id().unwrap_or(name).to_owned())
    }

    /// Deletes a key pair by name; deleting one that is not there succeeds, as in EC2.
    pub async fn delete_key_pair(&self, name: &str) -> Result<(), Ec2Error> {
        self.client
            .delete_key_pair()
            .key_name(name)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DeleteKeyPair", e))?;
        Ok(())
    }

    /// The key pairs carrying the tag `key` (with `value`, when given).
    pub async fn key_pairs_tagged(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> Result<Vec<Tagged>, Ec2Error> {
        let out = self
            .client
            .describe_key_pairs()
            .filters(tag_filter(key, value))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeKeyPairs", e))?;
        Ok(out
            .key_pairs()
            .iter()
            .map(|k| Tagged {
                id: k.key_pair_id().unwrap_or_default().to_owned(),
                name: k.key_name().unwrap_or_default().to_owned(),
                created: time_of(k.create_time()),
                tags: tags_of(k.tags()),
            })
            .collect())
    }

    /// The VPC the instances go into: the subnets' (one for all of them), else the region's
    /// default VPC. `Ok(Err(why))` when the settings cannot work.
    pub async fn vpc_for(
        &self,
        placements: &[Placement],
    ) -> Result<Result<String, String>, Ec2Error> {
        let subnets: Vec<&str> = placements
            .iter()
            .filter_map(|p| match p {
                Placement::Subnet(s) => Some(s.as_str()),
                _ => None,
            })
            .collect();
        if subnets.is_empty() {
            let out = self
                .client
                .describe_vpcs()
                .filters(filter("is-default", &["true"]))
                .send()
                .await
                .map_err(|e| Ec2Error::from_sdk("DescribeVpcs", e))?;
            return Ok(out
                .vpcs()
                .first()
                .and_then(|v| v.vpc_id())
                .map(str::to_owned)
                .ok_or_else(|| {
                    "the region has no default VPC: name the subnets to use (`subnets`)".into()
                }));
        }
        let out = self
            .client
            .describe_subnets()
            .set_subnet_ids(Some(subnets.iter().map(|s| s.to_string()).collect()))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeSubnets", e))?;
        let mut vpcs: Vec<&str> = out.subnets().iter().filter_map(|s| s.vpc_id()).collect();
        vpcs.sort_unstable();
        vpcs.dedup();
        Ok(match vpcs.as_slice() {
            [one] => Ok(one.to_string()),
            [] => Err("none of the subnets was found".into()),
            many => Err(format!(
                "the subnets lie in {} VPCs ({}): the run's security group can serve one",
                many.len(),
                many.join(", ")
            )),
        })
    }

    /// Creates a security group in `vpc` that admits SSH on `port` from `cidrs` only; answers
    /// its id. The group is tagged at its create, so that it is found by its tags even when the
    /// answer is lost.
    pub async fn create_security_group(
        &self,
        name: &str,
        vpc: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<String, Ec2Error> {
        let out = self
            .client
            .create_security_group()
            .group_name(name)
            .description(format!(
                "metalab {name}: SSH from the runner only, deleted when the run ends"
            ))
            .vpc_id(vpc)
            .tag_specifications(tag_specification(ResourceType::SecurityGroup, tags))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("CreateSecurityGroup", e))?;
        Ok(out.group_id().unwrap_or_default().to_owned())
    }

    /// Lets SSH on `port` in from each of `cidrs`.
    pub async fn admit_ssh(
        &self,
        group: &str,
        port: u16,
        cidrs: &[String],
    ) -> Result<(), Ec2Error> {
        let ranges = cidrs.iter().map(|c| {
            IpRange::builder()
                .cidr_ip(c)
                .description("the metalab runner")
                .build()
        });
        let ssh = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port.into())
            .to_port(port.into())
            .set_ip_ranges(Some(ranges.collect()))
            .build();
        self.client
            .authorize_security_group_ingress()
            .group_id(group)
            .ip_permissions(ssh)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("AuthorizeSecurityGroupIngress", e))?;
        Ok(())
    }

    pub async fn delete_security_group(&self, id: &str) -> Result<(), Ec2Error> {
        self.client
            .delete_security_group()
            .group_id(id)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DeleteSecurityGroup", e))?;
        Ok(())
    }

    /// The security groups carrying the tag `key` (with `value`, when given).
    pub async fn security_groups_tagged(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> Result<Vec<Tagged>, Ec2Error> {
        let pages: Vec<_> = self
            .client
            .describe_security_groups()
            .filters(tag_filter(key, value))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeSecurityGroups", e))?;
        Ok(pages
            .iter()
            .flat_map(|p| p.security_groups())
            .map(|g| Tagged {
                id: g.group_id().unwrap_or_default().to_owned(),
                name: g.group_name().unwrap_or_default().to_owned(),
                created: None,
                tags: tags_of(g.tags()),
            })
            .collect())
    }

    /// Launches one instance: terminated, not stopped, when it powers itself off; its metadata
    /// service reachable only from the instance itself (one hop, with a session token), so that
    /// nothing in its VMs can ask it for anything; tagged at launch, with its root volume.
    pub async fn run_instance(&self, l: &Launch<'_>) -> Result<Instance, Ec2Error> {
        use base64::Engine;
        let mut run = self
            .client
            .run_instances()
            .image_id(l.image)
            .instance_type(l.instance_type.into())
            .min_count(1)
            .max_count(1)
            .key_name(l.key_name)
            .security_group_ids(l.security_group)
            .user_data(base64::engine::general_purpose::STANDARD.encode(l.user_data))
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            .client_token(l.client_token)
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .tag_specifications(tag_specification(ResourceType::Instance, l.tags))
            .tag_specifications(tag_specification(ResourceType::Volume, l.tags));
        run = match l.placement {
            Placement::Subnet(s) => run.subnet_id(s),
            Placement::Zone(z) => run.placement(
                aws_sdk_ec2::types::Placement::builder()
                    .availability_zone(z)
                    .build(),
            ),
            Placement::Anywhere => run,
        };
        if l.spot {
            run = run.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .spot_instance_type(SpotInstanceType::OneTime)
                            .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                            .build(),
                    )
                    .build(),
            );
        }
        let out = run
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("RunInstances", e))?;
        out.instances()
            .first()
            .map(Instance::read)
            .ok_or_else(|| Ec2Error::Api {
                operation: "RunInstances",
                code: "an empty answer".into(),
                message: "it names no instance".into(),
            })
    }

    /// The instances carrying the tag `key` (with `value`, when given), terminated ones left
    /// out.
    pub async fn instances_tagged(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> Result<Vec<Instance>, Ec2Error> {
        let live = [
            InstanceStateName::Pending,
            InstanceStateName::Running,
            InstanceStateName::ShuttingDown,
            InstanceStateName::Stopping,
            InstanceStateName::Stopped,
        ];
        let states: Vec<&str> = live.iter().map(InstanceStateName::as_str).collect();
        self.describe(vec![
            tag_filter(key, value),
            filter("instance-state-name", &states),
        ])
        .await
    }

    /// One instance, whatever its state; `None` when EC2 does not know it (yet, or any more).
    pub async fn instance(&self, id: &str) -> Result<Option<Instance>, Ec2Error> {
        let out = self
            .client
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeInstances", e));
        match out {
            Ok(out) => Ok(out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .map(Instance::read)
                .next()),
            Err(e) if e.means_gone() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn describe(&self, filters: Vec<Filter>) -> Result<Vec<Instance>, Ec2Error> {
        let pages: Vec<_> = self
            .client
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeInstances", e))?;
        Ok(pages
            .iter()
            .flat_map(|p| p.reservations())
            .flat_map(|r| r.instances())
            .map(Instance::read)
            .collect())
    }

    /// Whether both status checks of a running instance pass (the instance's and the system's).
    pub async fn status_checks_pass(&self, id: &str) -> Result<bool, Ec2Error> {
        let out = self
            .client
            .describe_instance_status()
            .instance_ids(id)
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("DescribeInstanceStatus", e))?;
        let ok = |s: Option<&aws_sdk_ec2::types::InstanceStatusSummary>| {
            s.and_then(|s| s.status())
                .is_some_and(|s| s.as_str() == "ok")
        };
        Ok(out
            .instance_statuses()
            .first()
            .is_some_and(|s| ok(s.instance_status()) && ok(s.system_status())))
    }

    pub async fn terminate(&self, ids: &[String]) -> Result<(), Ec2Error> {
        self.client
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| Ec2Error::from_sdk("TerminateInstances", e))?;
        Ok(())
    }
}

/// EC2 answers `InsufficientInstanceCapacity` with a 500, which the SDK would retry with backoff
/// for as long as its attempts last (AWS's SDKs all do); metalab tries the next type or place
/// instead, at once.
#[derive(Debug)]
struct CapacityIsNotRetried;

impl aws_sdk_ec2::config::retry::ClassifyRetry for CapacityIsNotRetried {
    fn classify_retry(
        &self,
        ctx: &aws_sdk_ec2::config::interceptors::InterceptorContext,
    ) -> aws_sdk_ec2::config::retry::RetryAction {
        use aws_sdk_ec2::config::retry::RetryAction;
        let Some(Err(e)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let code = e
            .as_operation_error()
            .and_then(|e| {
                e.downcast_ref::<aws_sdk_ec2::operation::run_instances::RunInstancesError>()
            })
            .and_then(ProvideErrorMetadata::code);
        match code {
            Some(code) if super::error::is_capacity_code(code) => RetryAction::RetryForbidden,
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "metalab: no capacity is answered by the next type or place"
    }
}

/// `tag:KEY=VALUE`, or `tag-key=KEY` for any value.
fn tag_filter(key: &str, value: Option<&str>) -> Filter {
    match value {
        Some(v) => filter(&format!("tag:{key}"), &[v]),
        None => filter("tag-key", &[key]),
    }
}
