//! `train serve`: finished runs behind an HTTP JSON API, with dynamic batching, health and
//! Prometheus metrics, limits, a clean shutdown and a web page to watch the gates.
//!
//! One process serves one or more runs, each addressed by its run directory's name. Each
//! model has one worker thread ([`queue`]) that owns it: requests are queued (bounded by
//! `--max-queue`, over it → 503 with `Retry-After`), collected up to `--max-batch` texts or
//! `--max-wait-ms`, and run as one padded batch. The HTTP side ([`api`]) runs on tokio and never
//! touches a tensor, so slow batches do not stall `/healthz` or `/metrics`.
//!
//! Routes: `POST /v1/predict` (texts, forecast series, or WAV audio), `POST /v1/translate`,
//! `POST /v1/inspect`, `POST /v1/tag`, `POST /v1/transcribe` (WAV audio), `GET /healthz`,
//! `GET /v1/models`, `GET /metrics`, `GET /` (the page, assets embedded in the binary). A task
//! that lands later (`/v1/summarize`) is one [`models::Model`] variant, one [`queue::Work`]
//! kind and one route line in [`api::router`].

pub mod api;
pub mod classify;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod page;
pub mod queue;

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Arguments of `train serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// A finished run to serve (repeatable); addressed by its directory's name.
    #[arg(long = "run", value_name = "DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// Address to listen on (port 0: any free port, printed on stderr).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Most texts run together in one batch (1 = no batching).
    #[arg(long, default_value_t = 32)]
    pub max_batch: usize,
    /// How long the first request of a batch waits for others to join it.
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    /// Most requests waiting per model; beyond it requests get 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,
    /// Compute threads (default: the first run's `run.threads`; 0 = every core).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl ServeArgs {
    /// Refuses values that cannot work, naming the flag.
    pub fn validate(&self) -> Result<()> {
        if self.max_batch == 0 {
            bail!("--max-batch 0: expected at least 1 (1 turns batching off)");
        }
        if self.max_queue == 0 {
            bail!("--max-queue 0: expected at least 1");
        }
        if self.max_wait_ms > 10_000 {
            bail!("--max-wait-ms {}: expected at most 10000 (10 s)", self.max_wait_ms);
        }
        Ok(())
    }
}

/// `train serve`: loads every run, then serves until SIGTERM or Ctrl-C. In-flight requests
/// finish before the process exits.
pub fn cli(args: &ServeArgs) -> Result<()> {
    args.validate()?;
    let settings = queue::Settings {
        max_batch: args.max_batch,
        max_wait: std::time::Duration::from_millis(args.max_wait_ms),
        max_queue: args.max_queue,
    };
    let metrics = Arc::new(metrics::Metrics::default());
    let mut served = Vec::new();
    for dir in &args.runs {
        let m = models::Model::load(dir).with_context(|| format!("--run {}", dir.display()))?;
        if served.iter().any(|s: &queue::Served| s.info.name == m.name()) {
            bail!("--run {}: a run named {:?} is already served (names are directory names)", dir.display(), m.name());
        }
        served.push(queue::Served::start(m, dir, settings, metrics.clone())?);
    }
    let state = Arc::new(api::State { models: served, metrics, limits: limits::Limits::default() });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve-http")
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("--addr {}: cannot listen", args.addr))?;
        let local = listener.local_addr()?;
        // Tests and scripts read this line to find a port chosen by the OS.
        eprintln!("listening on http://{local}");
        serve(listener, state.clone(), shutdown_signal()).await?;
        state.stop();
        eprintln!("shut down cleanly");
        Ok(())
    })
}

/// Serves `state` on `listener` until `shutdown` resolves; then stops accepting and waits
/// for the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<api::State>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let app = api::router(state);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("serving HTTP")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("shutting down: no new connections; finishing the requests in flight");
}
