//! A local server that implements the Metal API v1 contract, with faults on demand.
//!
//! Equinix Metal is shut down, so this is what the `metal` provider is tested against. It
//! keeps its state in memory, walks devices through their states over configurable times,
//! enforces `termination_time`, and serves two admin endpoints outside the API root:
//! `GET /_admin/state` and `POST /_admin/faults`. With [`Shape::Strict`] it sends only the
//! fields the contract requires, and fields no client knows besides.

mod admin;
mod config;
mod device;
mod guard;
mod ids;
mod page;
mod rate;
mod reply;
mod routes;
mod shape;
mod store;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::middleware::from_fn_with_state;
use chrono::Utc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::warn;

pub use config::{Faults, RateLimit, ServerConfig, Timings};
pub use device::{DeletedBy, DeviceRecord, Fate};
pub use routes::API_ROOT;
pub use shape::Shape;
pub use store::{KeyRecord, RequestRecord, Snapshot};

use store::Store;

/// The state every handler shares.
type App = Arc<Mutex<Store>>;

/// The store, even if a handler panicked while holding it: the state is still worth reading.
fn lock(app: &App) -> MutexGuard<'_, Store> {
    app.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The store with every device moved on to now, so that each answer is current even between
/// two ticks of the background task.
fn current(app: &App) -> MutexGuard<'_, Store> {
    let mut store = lock(app);
    store.advance(Utc::now());
    store
}

/// Starts the server on `listener` and returns at once.
pub fn serve(config: ServerConfig, listener: TcpListener) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let tick = config.timings.tick;
    let app: App = Arc::new(Mutex::new(Store::new(config, Utc::now())));
    let (stop, stopped) = oneshot::channel::<()>();
    let routes = router(app.clone());
    let server = tokio::spawn(async move {
        // Dropping the sender stops the server as well as sending on it.
        let serving = axum::serve(listener, routes).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(error) = serving.await {
            warn!("Metal API server stopped: {error}");
        }
    });
    let ticker = tokio::spawn(walk_devices(app.clone(), tick));
    Ok(ServerHandle {
        addr,
        app,
        stop: Some(stop),
        server,
        ticker,
    })
}

fn router(app: App) -> Router {
    let api = routes::router().layer(from_fn_with_state(app.clone(), guard::guard));
    Router::new()
        .nest(API_ROOT, api)
        .merge(admin::router())
        .with_state(app)
}

/// Moves devices on even when nobody asks, so that `termination_time` is enforced.
async fn walk_devices(app: App, tick: std::time::Duration) {
    let mut interval = tokio::time::interval(tick);
    loop {
        interval.tick().await;
        lock(&app).advance(Utc::now());
    }
}

/// A running server. Dropping it stops the server.
pub struct ServerHandle {
    addr: SocketAddr,
    app: App,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    ticker: JoinHandle<()>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API root, e.g. `http://127.0.0.1:41234/metal/v1`: the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}{API_ROOT}", self.addr)
    }

    /// The admin root, e.g. `http://127.0.0.1:41234/_admin`.
    pub fn admin_url(&self) -> String {
        format!("http://{}/_admin", self.addr)
    }

    /// What `GET /_admin/state` returns, read in-process: devices as of the last tick.
    pub fn snapshot(&self) -> Snapshot {
        lock(&self.app).snapshot()
    }

    /// What `POST /_admin/faults` does, in-process.
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.app).faults = faults;
    }

    /// Stops accepting requests, lets the ones under way finish, and waits for that.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.ticker.abort();
        self.server.abort();
    }
}
