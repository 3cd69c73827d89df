//! A TCP relay in front of a server, whose current connections can be cut at once, like a
//! network that goes away for a moment. New connections keep working after a cut.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct Relay {
    pub port: u16,
    generation: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl Relay {
    pub fn start(to: u16) -> Relay {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let port = super::sshd::free_port();
        let generation = Arc::new(AtomicU64::new(0));
        let gen_task = generation.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                let born = gen_task.load(Ordering::SeqCst);
                let generation = gen_task.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await
                    else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.into_split();
                    let (mut ro, mut wo) = outbound.into_split();
                    let cut = async {
                        while generation.load(Ordering::SeqCst) == born {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut ri, &mut wo) => {}
                        _ = tokio::io::copy(&mut ro, &mut wi) => {}
                        _ = cut => {}
                    }
                });
            }
        });
        Relay {
            port,
            generation,
            _runtime: runtime,
        }
    }

    /// Drops every connection open now.
    pub fn cut(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}
