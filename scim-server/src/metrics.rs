//! What `/metrics` exposes, in one place (Prometheus / OpenMetrics text, `prometheus-client`).
//!
//! Two kinds of metric, and how to add one:
//!
//! * **In-process counters and histograms** ([`Metrics`]): events this process counts as they
//!   happen (requests, operation outcomes). Add a field to [`Metrics`] and one `register` line in
//!   [`Metrics::new`]; the code that sees the event calls `metrics::global().<field>`.
//! * **Database gauges** ([`DB_GAUGES`]): state the database holds (queues, open incidents),
//!   read at scrape time by one bounded aggregate query each, on a reader connection (never the
//!   SQLite writer), so nothing is updated on the write path and every node of a PostgreSQL
//!   cluster reports the same numbers. Add the query to `store::metrics` and one [`DbGauge`]
//!   line to [`DB_GAUGES`].
//!
//! Label values come from bounded sets only (route patterns, never raw paths; connector names
//! from the policy; kinds and statuses the code defines).

use std::sync::atomic::AtomicU64;
use std::sync::LazyLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::error::HubResult;
use crate::store::metrics::{self as queries, GaugeRow};
use crate::store::Store;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// An HTTP method, as a label value without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(clippy::upper_case_acronyms)]
pub enum Method {
    GET,
    HEAD,
    POST,
    PUT,
    PATCH,
    DELETE,
    OPTIONS,
    OTHER,
}

impl Method {
    pub fn of(m: &actix_web::http::Method) -> Method {
        match m.as_str() {
            "GET" => Method::GET,
            "HEAD" => Method::HEAD,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            "OPTIONS" => Method::OPTIONS,
            _ => Method::OTHER,
        }
    }
}

/// Labels of `scimhub_http_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route pattern (`/scim/v2/{kind}/{id}`), or `unmatched`.
    pub route: String,
    pub method: Method,
    pub status: u16,
}

/// Labels of `scimhub_http_request_duration_seconds`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: Method,
}

/// Labels of `scimhub_outbox_operation_outcomes_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub connector: String,
    /// The operation (`create_or_adopt`, `grant`, …).
    pub kind: &'static str,
    /// `done`, `retry`, `parked` or `lost`.
    pub outcome: &'static str,
}

/// Labels of `scimhub_sla_results_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct SlaLabels {
    /// The event type (`joiner`, `mover`, `leaver`, `contractor-expiry`, …).
    pub event: String,
    /// `met` (complete before the deadline), `breached` (not complete at the deadline) or
    /// `late` (a breached plan completed afterwards).
    pub result: &'static str,
}

/// Labels of `scimhub_verification_outcomes_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct VerificationLabels {
    pub connector: String,
    /// `verified`, `mismatch`, `unreadable` or `not_verifiable`.
    pub outcome: String,
}

fn request_histogram() -> Histogram {
    // 0.5 ms .. ~4 s: a point read takes well under a millisecond, a large /Bulk seconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 14,
    ))
}

/// The process's counters and histograms.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub operation_outcomes: Family<OutcomeLabels, Counter>,
    pub sla_results: Family<SlaLabels, Counter>,
    pub verification_outcomes: Family<VerificationLabels, Counter>,
    /// `scimhub_reconcile_runs_total`, by connector and trigger.
    pub reconcile_runs: Family<Vec<(&'static str, String)>, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let http_requests = Family::<RequestLabels, Counter>::default();
        let http_request_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                request_histogram,
            );
        let operation_outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "scimhub_http_requests",
            "HTTP requests answered, by route pattern, method and status",
            http_requests.clone(),
        );
        registry.register(
            "scimhub_http_request_duration_seconds",
            "Time from the request reaching the application to its response, by route and method",
            http_request_duration.clone(),
        );
        registry.register(
            "scimhub_outbox_operation_outcomes",
            "Outbox operations finished by this process, by connector, operation kind and outcome",
            operation_outcomes.clone(),
        );
        let sla_results = Family::<SlaLabels, Counter>::default();
        registry.register(
            "scimhub_sla_results",
            "SLA results recorded by this process, by event type and result (met; breached at \
             the deadline; late: a breached plan completed)",
            sla_results.clone(),
        );
        let verification_outcomes = Family::<VerificationLabels, Counter>::default();
        registry.register(
            "scimhub_verification_outcomes",
            "Post-change verification checks recorded by this process, by connector and outcome",
            verification_outcomes.clone(),
        );
        let reconcile_runs = Family::<Vec<(&'static str, String)>, Counter>::default();
        registry.register(
            "scimhub_reconcile_runs",
            "Drift reconciliation runs started by this process, by connector and trigger \
             (schedule, cli, api)",
            reconcile_runs.clone(),
        );
        Metrics {
            reconcile_runs,
            registry,
            http_requests,
            http_request_duration,
            operation_outcomes,
            sla_results,
            verification_outcomes,
        }
    }

    /// Counts one outbox operation's outcome (`done`, `retry`, `parked`, `lost`).
    pub fn operation_outcome(&self, connector: &str, kind: &'static str, outcome: &'static str) {
        self.operation_outcomes
            .get_or_create(&OutcomeLabels {
                connector: connector.to_string(),
                kind,
                outcome,
            })
            .inc();
    }
}

impl Metrics {
    /// Counts one SLA result of an event of type `event` (`met`, `breached`, `late`).
    pub fn sla_result(&self, event: &str, result: &'static str) {
        self.sla_results
            .get_or_create(&SlaLabels {
                event: event.to_string(),
                result,
            })
            .inc();
    }

    /// Counts one verification check of `connector` with `outcome`.
    pub fn verification_outcome(&self, connector: &str, outcome: &str) {
        self.verification_outcomes
            .get_or_create(&VerificationLabels {
                connector: connector.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts one reconciliation run of `connector` (`trigger`: schedule, cli, api).
    pub fn reconcile_run(&self, connector: &str, trigger: &str) {
        self.reconcile_runs
            .get_or_create(&vec![
                ("connector", connector.to_string()),
                ("trigger", trigger.to_string()),
            ])
            .inc();
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics (one registry per process: the counters describe this process).
pub fn global() -> &'static Metrics {
    &METRICS
}

/// A gauge read from the database at scrape time.
#[derive(Debug)]
pub struct DbGauge {
    pub name: &'static str,
    pub help: &'static str,
    /// The label names, in the order of each row's values.
    pub labels: &'static [&'static str],
    pub read:
        fn(&mut crate::store::DbConnection, &queries::ScrapeContext) -> HubResult<Vec<GaugeRow>>,
}

/// Every database gauge, read in this order on one reader connection.
pub const DB_GAUGES: &[DbGauge] = &[
    DbGauge {
        name: "scimhub_outbox_operations",
        help: "Outbox operations not done, by connector, lane (priority: leavers and expiries; \
               normal) and status (pending, running, held, failed = parked)",
        labels: &["connector", "lane", "status"],
        read: queries::outbox_depth,
    },
    DbGauge {
        name: "scimhub_outbox_oldest_pending_age_seconds",
        help: "Age of the oldest pending outbox operation, by connector and lane",
        labels: &["connector", "lane"],
        read: queries::outbox_oldest_pending_age,
    },
    DbGauge {
        name: "scimhub_incidents_open",
        help: "Open incidents, by kind",
        labels: &["kind"],
        read: queries::open_incidents,
    },
    DbGauge {
        name: "scimhub_notifications",
        help: "Notifications not sent, by status (pending, running, failed = parked)",
        labels: &["status"],
        read: queries::notification_backlog,
    },
    DbGauge {
        name: "scimhub_connector_circuit_state",
        help: "Each connector's circuit breaker: 0 closed (operations run), 1 half-open (one \
               probe running), 2 open (operations wait for the next probe)",
        labels: &["connector"],
        read: queries::circuit_state,
    },
    DbGauge {
        name: "scimhub_drift_findings",
        help: "Open drift findings, by connector and kind",
        labels: &["connector", "kind"],
        read: crate::store::drift::gauge_open,
    },
    DbGauge {
        name: "scimhub_holds_pending",
        help: "Blast-radius holds waiting for an admin",
        labels: &[],
        read: queries::holds_pending,
    },
];

/// A counter family with one label, from a store's counts per label value.
fn counter_family<const N: usize>(
    label: &'static str,
    counts: [(&'static str, u64); N],
) -> Family<Vec<(&'static str, String)>, Counter> {
    let family = Family::<Vec<(&'static str, String)>, Counter>::default();
    for (value, n) in counts {
        family
            .get_or_create(&vec![(label, value.to_string())])
            .inc_by(n);
    }
    family
}

/// The settings of a blast-radius guard, as the gauges report them (the HTTP handler reads
/// them off the policy in force: metrics sits beside policy, not above it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardGauge {
    pub max_share: f64,
    pub window_seconds: i64,
    pub min_population: u64,
}

/// The blast-radius guard of the policy this process runs: whether there is one and, when there
/// is, each of its settings. An alert on these catches a guard removed or loosened by an edit
/// that took nothing away, which no hold and no later change would show.
fn register_guard(registry: &mut Registry, guard: Option<GuardGauge>) {
    let gauge = |value: f64| {
        let g = Gauge::<f64, AtomicU64>::default();
        g.set(value);
        g
    };
    registry.register(
        "scimhub_blast_radius_guard_enabled",
        "Whether the policy this process runs has a blast-radius guard ([blast_radius]): 1 yes, \
         0 no (mass removals of access are never held)",
        gauge(if guard.is_some() { 1.0 } else { 0.0 }),
    );
    if let Some(b) = guard {
        registry.register(
            "scimhub_blast_radius_guard_max_share",
            "The guard's max_share: the largest share of users (0..1) that may lose access within \
             its window without a hold",
            gauge(b.max_share),
        );
        registry.register(
            "scimhub_blast_radius_guard_window_seconds",
            "The guard's window: removals within it are counted together",
            gauge(b.window_seconds as f64),
        );
        registry.register(
            "scimhub_blast_radius_guard_min_population",
            "The guard's min_population: directories with fewer users are not guarded",
            gauge(b.min_population as f64),
        );
    }
}

/// What the engine's part of the exposition shows: nothing when the engine does not run
/// (`serve` without `--policy`: its tables' gauges and the guard's are left out, not reported
/// as zero), else the guard of the policy it runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EngineGauges {
    Off,
    On { guard: Option<GuardGauge> },
}

/// The whole exposition: the process's metrics, then the database gauges (blocking: call on
/// the blocking pool).
pub fn render(store: &Store, engine: EngineGauges, priority_lane: i64) -> HubResult<String> {
    let mut scraped = Registry::default();
    if let EngineGauges::On { guard } = engine {
        register_guard(&mut scraped, guard);
        let ctx = queries::ScrapeContext {
            now: store.now(),
            priority_lane,
        };
        let mut c = store.read_conn()?;
        for gauge in DB_GAUGES {
            let family = Family::<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>::default();
            for row in (gauge.read)(&mut c, &ctx)? {
                let labels = gauge.labels.iter().copied().zip(row.labels).collect();
                family.get_or_create(&labels).set(row.value);
            }
            scraped.register(gauge.name, gauge.help, family);
        }
    }
    if let Some(counts) = store.write_batch_counts() {
        scraped.register(
            "scimhub_write_batches",
            "Group-commit batches of writes committed by this process: optimistic (no \
             savepoints) or guarded (a savepoint per write, after a write failed); rerun: \
             optimistic runs a failing write spoiled, run again guarded",
            counter_family("mode", counts),
        );
    }
    if let Some(counts) = store.pg_deep_page_counts() {
        scraped.register(
            "scimhub_pg_deep_pages",
            "Unfiltered index pages at least 100 rows deep on PostgreSQL, by how they found \
             their first row: seek (id ranks whose population marker the page's statement \
             confirmed), caught_up (the same after the ranks caught up with writes since), walk \
             (OFFSET)",
            counter_family("path", counts),
        );
    }
    let mut out = String::new();
    let encode = |out: &mut String| -> std::fmt::Result {
        prometheus_client::encoding::text::encode_registry(out, &global().registry)?;
        prometheus_client::encoding::text::encode_registry(out, &scraped)?;
        prometheus_client::encoding::text::encode_eof(out)
    };
    encode(&mut out).map_err(|e| crate::error::HubError::Backend(format!("metrics: {e}")))?;
    Ok(out)
}
