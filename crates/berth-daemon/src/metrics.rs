//! Prometheus/OpenMetrics metrics (`GET /metrics`) with an explicit
//! registry (prometheus-client): per-app state, restarts and quarantine,
//! health-probe latency, reconcile tick duration, engine calls and errors,
//! API requests and live-stream clients.
//!
//! Engine calls are counted by [`MeteredEngine`], a wrapper around the
//! daemon's engine, so nothing in `berth-engine` knows about metrics.
//! Per-app gauges are rewritten from every state snapshot, so an app that
//! was uninstalled disappears from them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth_core::observed::ObservedContainer;
use berth_core::spec::ContainerSpec;
use berth_engine::{
    Engine, EngineError, EngineEvent, EngineInfo, EngineKind, EngineObject, ExecOutput,
    PullProgress,
};
use berth_web::StateView;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The content type of `GET /metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabels {
    pub app: String,
    pub stack: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppStateLabels {
    pub app: String,
    pub stack: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProbeLabels {
    pub app: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabels {
    pub op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpErrorLabels {
    pub op: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `2xx`, `3xx`, `4xx`, `5xx`.
    pub class: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    app_state: Family<AppStateLabels, Gauge>,
    app_desired_running: Family<AppLabels, Gauge>,
    app_restarts: Family<AppLabels, Gauge>,
    app_quarantined: Family<AppLabels, Gauge>,
    probe_seconds: HistogramFamily<ProbeLabels>,
    tick_seconds: Histogram,
    ticks: Counter,
    engine_calls: Family<OpLabels, Counter>,
    engine_errors: Family<OpErrorLabels, Counter>,
    engine_call_seconds: HistogramFamily<OpLabels>,
    engine_up: Gauge,
    http_requests: Family<HttpLabels, Counter>,
    sse_clients: Gauge<i64, AtomicI64>,
    login_failures: Counter,
    events: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("berth");
        let m = Metrics {
            app_state: Family::default(),
            app_desired_running: Family::default(),
            app_restarts: Family::default(),
            app_quarantined: Family::default(),
            probe_seconds: Family::new_with_constructor(latency_histogram),
            tick_seconds: latency_histogram(),
            ticks: Counter::default(),
            engine_calls: Family::default(),
            engine_errors: Family::default(),
            engine_call_seconds: Family::new_with_constructor(latency_histogram),
            engine_up: Gauge::default(),
            http_requests: Family::default(),
            sse_clients: Gauge::default(),
            login_failures: Counter::default(),
            events: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "app_state",
            "1 for the state each installed app is in (running, stopped, crashed, held, ...)",
            m.app_state.clone(),
        );
        registry.register(
            "app_desired_running",
            "1 when the user wants the app running, 0 when they stopped it",
            m.app_desired_running.clone(),
        );
        registry.register(
            "app_restarts",
            "supervision restarts since the app's counter was last reset",
            m.app_restarts.clone(),
        );
        registry.register(
            "app_quarantined",
            "1 while the app is in crash-loop quarantine",
            m.app_quarantined.clone(),
        );
        registry.register(
            "health_probe_duration_seconds",
            "duration of the health monitors' probes",
            m.probe_seconds.clone(),
        );
        registry.register(
            "reconcile_tick_duration_seconds",
            "duration of a reconcile tick (listing, planning, dispatching)",
            m.tick_seconds.clone(),
        );
        registry.register("reconcile_ticks", "reconcile ticks", m.ticks.clone());
        registry.register(
            "engine_calls",
            "calls to the container engine's API, by operation",
            m.engine_calls.clone(),
        );
        registry.register(
            "engine_errors",
            "failed engine calls, by operation and kind (unavailable, not-found, other)",
            m.engine_errors.clone(),
        );
        registry.register(
            "engine_call_duration_seconds",
            "duration of engine calls (the event stream excluded)",
            m.engine_call_seconds.clone(),
        );
        registry.register(
            "engine_up",
            "1 when the last reconcile tick could list containers",
            m.engine_up.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP API requests answered, by status class",
            m.http_requests.clone(),
        );
        registry.register(
            "sse_clients",
            "live-stream (SSE) clients connected now",
            m.sse_clients.clone(),
        );
        registry.register(
            "login_failures",
            "failed logins and requests with a wrong token",
            m.login_failures.clone(),
        );
        registry.register(
            "events",
            "events published on the live stream",
            m.events.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn observe_probe(&self, app: &str, elapsed: Duration, ok: bool) {
        self.probe_seconds
            .get_or_create(&ProbeLabels {
                app: app.to_string(),
                result: if ok { "ok" } else { "failed" }.into(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_tick(&self, elapsed: Duration) {
        self.ticks.inc();
        self.tick_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn observe_http(&self, status: u16) {
        self.http_requests
            .get_or_create(&HttpLabels {
                class: format!("{}xx", status / 100),
            })
            .inc();
    }

    pub fn sse_client(&self, delta: i64) {
        self.sse_clients.inc_by(delta);
    }

    pub fn login_failed(&self) {
        self.login_failures.inc();
    }

    pub fn events_published(&self, n: u64) {
        self.events.inc_by(n);
    }

    fn engine_call(&self, op: &'static str, elapsed: Duration, error: Option<&EngineError>) {
        let labels = OpLabels { op: op.into() };
        self.engine_calls.get_or_create(&labels).inc();
        self.engine_call_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(e) = error {
            let kind = match e {
                EngineError::Unavailable { .. } => "unavailable",
                e if e.is_not_found() => "not-found",
                _ => "other",
            };
            self.engine_errors
                .get_or_create(&OpErrorLabels {
                    op: op.into(),
                    kind: kind.into(),
                })
                .inc();
        }
    }

    /// Rewrite the per-app gauges from a state snapshot.
    pub fn observe_state(&self, view: &StateView) {
        self.app_state.clear();
        self.app_desired_running.clear();
        self.app_restarts.clear();
        self.app_quarantined.clear();
        for a in &view.apps {
            let labels = AppLabels {
                app: a.id.clone(),
                stack: a.stack.clone(),
            };
            self.app_state
                .get_or_create(&AppStateLabels {
                    app: a.id.clone(),
                    stack: a.stack.clone(),
                    state: a.badge.kind.clone(),
                })
                .set(1);
            self.app_desired_running
                .get_or_create(&labels)
                .set(i64::from(a.desired == "running"));
            self.app_restarts
                .get_or_create(&labels)
                .set(i64::from(a.restarts));
            self.app_quarantined
                .get_or_create(&labels)
                .set(i64::from(a.quarantine.is_some()));
        }
        self.engine_up.set(i64::from(view.engine.reachable));
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The daemon's engine, counting every call (and its errors and duration)
/// by operation.
pub struct MeteredEngine {
    inner: Arc<dyn Engine>,
    metrics: Arc<Metrics>,
}

impl MeteredEngine {
    pub fn new(inner: Arc<dyn Engine>, metrics: Arc<Metrics>) -> MeteredEngine {
        MeteredEngine { inner, metrics }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = berth_engine::Result<T>>,
    ) -> berth_engine::Result<T> {
        let started = Instant::now();
        let r = f.await;
        self.metrics
            .engine_call(op, started.elapsed(), r.as_ref().err());
        r
    }
}

#[async_trait]
impl Engine for MeteredEngine {
    fn kind(&self) -> EngineKind {
        self.inner.kind()
    }
    async fn info(&self) -> berth_engine::Result<EngineInfo> {
        self.timed("info", self.inner.info()).await
    }
    async fn list_containers(
        &self,
        label: (&str, &str),
    ) -> berth_engine::Result<Vec<ObservedContainer>> {
        self.timed("list_containers", self.inner.list_containers(label))
            .await
    }
    async fn inspect_container(
        &self,
        name: &str,
    ) -> berth_engine::Result<Option<ObservedContainer>> {
        self.timed("inspect_container", self.inner.inspect_container(name))
            .await
    }
    async fn container_ip(
        &self,
        name: &str,
        network: &str,
    ) -> berth_engine::Result<Option<String>> {
        self.timed("container_ip", self.inner.container_ip(name, network))
            .await
    }
    async fn image_exists(&self, image: &str) -> berth_engine::Result<bool> {
        self.timed("image_exists", self.inner.image_exists(image))
            .await
    }
    async fn pull_image(
        &self,
        image: &str,
        progress: &(dyn Fn(PullProgress) + Send + Sync),
    ) -> berth_engine::Result<()> {
        self.timed("pull_image", self.inner.pull_image(image, progress))
            .await
    }
    async fn ensure_network(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> berth_engine::Result<bool> {
        self.timed("ensure_network", self.inner.ensure_network(name, labels))
            .await
    }
    async fn remove_network(&self, name: &str) -> berth_engine::Result<()> {
        self.timed("remove_network", self.inner.remove_network(name))
            .await
    }
    async fn list_networks(&self, label: (&str, &str)) -> berth_engine::Result<Vec<EngineObject>> {
        self.timed("list_networks", self.inner.list_networks(label))
            .await
    }
    async fn ensure_volume(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
    ) -> berth_engine::Result<bool> {
        self.timed("ensure_volume", self.inner.ensure_volume(name, labels))
            .await
    }
    async fn remove_volume(&self, name: &str) -> berth_engine::Result<()> {
        self.timed("remove_volume", self.inner.remove_volume(name))
            .await
    }
    async fn list_volumes(&self, label: (&str, &str)) -> berth_engine::Result<Vec<EngineObject>> {
        self.timed("list_volumes", self.inner.list_volumes(label))
            .await
    }
    async fn create_container(&self, spec: &ContainerSpec) -> berth_engine::Result<String> {
        self.timed("create_container", self.inner.create_container(spec))
            .await
    }
    async fn start_container(&self, name: &str) -> berth_engine::Result<()> {
        self.timed("start_container", self.inner.start_container(name))
            .await
    }
    async fn stop_container(&self, name: &str, grace: Duration) -> berth_engine::Result<()> {
        self.timed("stop_container", self.inner.stop_container(name, grace))
            .await
    }
    async fn kill_container(&self, name: &str, signal: &str) -> berth_engine::Result<()> {
        self.timed("kill_container", self.inner.kill_container(name, signal))
            .await
    }
    async fn remove_container(&self, name: &str, force: bool) -> berth_engine::Result<()> {
        self.timed("remove_container", self.inner.remove_container(name, force))
            .await
    }
    async fn container_image_id(&self, name: &str) -> berth_engine::Result<Option<String>> {
        self.timed("container_image_id", self.inner.container_image_id(name))
            .await
    }
    async fn rename_container(&self, name: &str, new_name: &str) -> berth_engine::Result<()> {
        self.timed(
            "rename_container",
            self.inner.rename_container(name, new_name),
        )
        .await
    }
    async fn logs(&self, name: &str, tail: usize) -> berth_engine::Result<Vec<String>> {
        self.timed("logs", self.inner.logs(name, tail)).await
    }
    async fn exec(
        &self,
        name: &str,
        argv: &[String],
        timeout: Duration,
    ) -> berth_engine::Result<ExecOutput> {
        self.timed("exec", self.inner.exec(name, argv, timeout))
            .await
    }
    async fn watch_events(
        &self,
        sink: &(dyn Fn(EngineEvent) + Send + Sync),
    ) -> berth_engine::Result<()> {
        // A stream that lives for hours: counted, not timed.
        let r = self.inner.watch_events(sink).await;
        self.metrics
            .engine_call("watch_events", Duration::ZERO, r.as_ref().err());
        r
    }
    fn call_count(&self) -> u64 {
        self.inner.call_count()
    }
}
