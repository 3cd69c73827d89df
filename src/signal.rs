//! Signals become a shutdown level that the engine watches: the first SIGINT, SIGTERM or SIGHUP
//! asks for an orderly teardown; a second one switches to a fast teardown. No signal ever skips
//! teardown: metalab exits only after the VMs are gone.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::exit::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Running,
    /// Stop work, then destroy everything in order.
    Graceful(Sig),
    /// Destroy by name, now.
    Fast(Sig),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Int,
    Term,
    Hup,
}

impl Sig {
    pub fn name(self) -> &'static str {
        match self {
            Sig::Int => "SIGINT",
            Sig::Term => "SIGTERM",
            Sig::Hup => "SIGHUP",
        }
    }

    /// The exit status after cleanup: 128 + the signal number, as shells report it.
    pub fn status(self) -> Status {
        match self {
            Sig::Term => Status::Terminated,
            Sig::Int | Sig::Hup => Status::Interrupted,
        }
    }
}

/// The receiving side: cheap to clone, one per task that must react.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<Level>,
}

impl Shutdown {
    /// Installs the handlers. Must be called inside the tokio runtime.
    pub fn install() -> std::io::Result<Shutdown> {
        let (tx, rx) = watch::channel(Level::Running);
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            loop {
                let sig = tokio::select! {
                    _ = int.recv() => Sig::Int,
                    _ = term.recv() => Sig::Term,
                    _ = hup.recv() => Sig::Hup,
                };
                tx.send_modify(|level| {
                    *level = match *level {
                        Level::Running => Level::Graceful(sig),
                        Level::Graceful(first) | Level::Fast(first) => Level::Fast(first),
                    }
                });
            }
        });
        Ok(Shutdown { rx })
    }

    pub fn level(&self) -> Level {
        *self.rx.borrow()
    }

    /// The first signal received, if any.
    pub fn signal(&self) -> Option<Sig> {
        match self.level() {
            Level::Running => None,
            Level::Graceful(s) | Level::Fast(s) => Some(s),
        }
    }

    /// Resolves once a teardown was requested.
    pub async fn requested(&self) -> Sig {
        let mut rx = self.rx.clone();
        loop {
            if let Level::Graceful(s) | Level::Fast(s) = *rx.borrow_and_update() {
                return s;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves once a fast teardown was requested.
    pub async fn fast(&self) -> Sig {
        let mut rx = self.rx.clone();
        loop {
            if let Level::Fast(s) = *rx.borrow_and_update() {
                return s;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
