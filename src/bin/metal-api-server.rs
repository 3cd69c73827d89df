//! Runs the local Metal API v1 server until SIGINT or SIGTERM.
//!
//! It prints the API root it serves on the first line of stdout and the admin root on the
//! second, so that a script can start it on port 0 and read where it went.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use metalab::metal::ApiToken;
use metalab::metal::server::{self, Faults, RateLimit, ServerConfig, Shape, Timings};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// A local server implementing the Packet / Equinix Metal API v1, with faults on demand.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The token clients must send in X-Auth-Token.
    #[arg(long, env = "METAL_API_SERVER_TOKEN", hide_env_values = true)]
    token: String,
    /// The id of the one project that exists.
    #[arg(long, default_value = "metalab-project")]
    project: String,
    /// How long a new device stays queued.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    queued: Duration,
    /// How long provisioning takes.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    provisioning: Duration,
    /// How long deprovisioning takes.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    deprovisioning: Duration,
    /// How often devices are moved on and termination times enforced.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    tick: Duration,
    /// The public management IPv4 every device reports.
    #[arg(long, default_value = "127.0.0.1")]
    ssh_address: Ipv4Addr,
    /// The SSH port behind that address, reported in /_admin/state.
    #[arg(long, default_value_t = 22)]
    ssh_port: u16,
    /// Capacity of a metro as CODE=COUNT; repeat for several. Default: am, da, ny, sv with 10.
    #[arg(long = "metro", value_parser = parse_metro)]
    metros: Vec<(String, u32)>,
    /// Requests allowed per rate-limit window.
    #[arg(long, default_value_t = 5000)]
    rate_limit: u32,
    /// The rate-limit window.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    rate_window: Duration,
    /// Faults active from the start, as the JSON that POST /_admin/faults takes.
    #[arg(long)]
    faults: Option<String>,
    /// Send only the fields the contract requires, and fields no client knows besides: what
    /// another server keeping the contract may send. By default every field is sent.
    #[arg(long)]
    strict: bool,
}

fn parse_metro(text: &str) -> anyhow::Result<(String, u32)> {
    let Some((code, count)) = text.split_once('=') else {
        bail!("expected CODE=COUNT, got {text:?}");
    };
    let count = count
        .parse()
        .with_context(|| format!("count in {text:?}"))?;
    Ok((code.trim().to_lowercase(), count))
}

impl Args {
    fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::new(ApiToken::new(&self.token), &self.project);
        config.timings = Timings {
            queued: self.queued,
            provisioning: self.provisioning,
            deprovisioning: self.deprovisioning,
            tick: self.tick,
        };
        config.rate_limit = RateLimit {
            limit: self.rate_limit,
            window: self.rate_window,
        };
        config.ssh_address = self.ssh_address;
        config.ssh_port = self.ssh_port;
        if self.strict {
            config.shape = Shape::Strict;
        }
        if !self.metros.is_empty() {
            config.metros = self.metros.iter().cloned().collect::<BTreeMap<_, _>>();
        }
        if let Some(faults) = &self.faults {
            config.faults = serde_json::from_str::<Faults>(faults).context("--faults")?;
        }
        Ok(config)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let config = args.config()?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let handle = server::serve(config, listener).context("starting the server")?;
    println!("{}", handle.base_url());
    println!("{}", handle.admin_url());
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    handle.shutdown().await;
    Ok(())
}
