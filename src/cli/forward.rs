//! `metalab forward`: reach a service inside a VM from this machine, like `ssh -L`.

use std::sync::Arc;

use clap::Args;

use super::Failure;
use crate::exit::Status;
use crate::state::StateDir;

#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// The run whose VM to use (default: the newest running lab that has this VM).
    #[arg(long, value_name = "RUN_ID")]
    run: Option<String>,
    /// The VM, as named in the Vagrantfile.
    vm: String,
    /// LOCAL_PORT:VM_PORT, e.g. 8080:80. The local side listens on 127.0.0.1 only.
    #[arg(value_parser = parse_ports)]
    ports: (u16, u16),
}

fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (l, r) = s
        .split_once(':')
        .ok_or("expected LOCAL_PORT:VM_PORT, e.g. 8080:80")?;
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("`{p}` is not a port number"))
    };
    Ok((port(l)?, port(r)?))
}

pub async fn forward(args: ForwardArgs) -> Result<Status, Failure> {
    let state = StateDir::from_env();
    let lab = super::exec::find_lab(&state, args.run.as_deref(), &args.vm)?;
    let vm = lab.vm(&args.vm).expect("find_lab checked the VM").clone();
    let infra = |e: String| Failure::new(Status::InfraError, e);
    let session = Arc::new(
        lab.connect_vm(&state, &vm)
            .await
            .map_err(|e| infra(format!("{e:#}")))?,
    );
    let (local, remote) = args.ports;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", local))
        .await
        .map_err(|e| {
            Failure::new(
                Status::BadInput,
                format!("cannot listen on 127.0.0.1:{local}: {e}"),
            )
        })?;
    eprintln!(
        "forwarding 127.0.0.1:{local} → {}:{remote} (run {}); Ctrl-C stops",
        vm.name, lab.run_id
    );
    tokio::select! {
        r = session.forward(listener, "127.0.0.1".into(), remote) => r.map_err(|e| infra(e.to_string()))?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(Status::Passed)
}
