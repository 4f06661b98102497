//! `GET /metrics` and the request counters behind it ([`crate::metrics`] defines every metric).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpResponse};

use crate::auth::{Principal, Scope};
use crate::metrics::{self, Method, RequestLabels, RouteLabels};

use super::error::{ApiError, ApiResult};
use super::AppState;

/// The route label of a request that matched no route (404s for any path): one value, so a
/// scan of random paths adds no series.
const UNMATCHED: &str = "unmatched";

/// Counts every request by route pattern, method and status, and observes its latency. The
/// route is the pattern actix matched (`/scim/v2/{kind}/{id}`), never the path: ids and link
/// tokens never become label values.
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = Method::of(req.method());
    // Matched here, before the call: a middleware's refusal (401, 403, 429) is an error that
    // carries no request, and is counted under its route all the same.
    let hot = super::hot_route_label(req.path());
    let other = match hot {
        Some(_) => None,
        None => Some(
            req.match_pattern()
                .map_or_else(|| UNMATCHED.to_string(), |p| super::route_label(&p)),
        ),
    };
    let res = next.call(req).await;
    let status = match &res {
        Ok(r) => r.status(),
        Err(e) => e.as_response_error().status_code(),
    }
    .as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    match (hot, other) {
        (Some(route), _) => HotSeries::record(route, method, status, elapsed),
        (None, route) => record(route.unwrap_or_default(), method, status, elapsed),
    }
    res
}

/// One request into the two families, looked up by label.
fn record(route: String, method: Method, status: u16, elapsed: f64) {
    let m = metrics::global();
    let labels = RequestLabels {
        route,
        method,
        status,
    };
    m.http_requests.get_or_create(&labels).inc();
    m.http_request_duration
        .get_or_create(&RouteLabels {
            route: labels.route,
            method,
        })
        .observe(elapsed);
}

/// This thread's handles on the series of the hot routes (SCIM reads and writes by id and by
/// endpoint, `http::hot_route_label`), so that their requests skip the families' lock, the
/// label's hashing and its allocation. A handle shares its series with the family (series are
/// never removed), so what is scraped is the same.
struct HotSeries {
    route: &'static str,
    method: Method,
    status: u16,
    requests: prometheus_client::metrics::counter::Counter,
    duration: prometheus_client::metrics::histogram::Histogram,
}

/// The most handles a thread keeps: two routes times the methods and statuses they answer.
const HOT_SERIES_PER_THREAD: usize = 64;

thread_local! {
    static HOT_SERIES: std::cell::RefCell<Vec<HotSeries>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl HotSeries {
    fn record(route: &'static str, method: Method, status: u16, elapsed: f64) {
        let recorded = HOT_SERIES.try_with(|cache| {
            let Ok(mut cache) = cache.try_borrow_mut() else {
                return false;
            };
            let at = cache
                .iter()
                .position(|h| h.route == route && h.method == method && h.status == status);
            let at = match at {
                Some(at) => at,
                None if cache.len() < HOT_SERIES_PER_THREAD => {
                    let m = metrics::global();
                    let labels = RequestLabels {
                        route: route.to_string(),
                        method,
                        status,
                    };
                    let requests = m.http_requests.get_or_create(&labels).clone();
                    let duration = m
                        .http_request_duration
                        .get_or_create(&RouteLabels {
                            route: labels.route,
                            method,
                        })
                        .clone();
                    cache.push(HotSeries {
                        route,
                        method,
                        status,
                        requests,
                        duration,
                    });
                    cache.len() - 1
                }
                None => return false,
            };
            let h = &cache[at];
            h.requests.inc();
            h.duration.observe(elapsed);
            true
        });
        if !matches!(recorded, Ok(true)) {
            record(route.to_string(), method, status, elapsed);
        }
    }
}

/// Refuses a principal without `metrics:read` (after `identify_only`).
pub async fn require_metrics_scope(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let allowed = req
        .extensions()
        .get::<Principal>()
        .is_some_and(|p| p.has(Scope::MetricsRead));
    if !allowed {
        return Err(ApiError::Forbidden("The token lacks the metrics:read scope.".into()).into());
    }
    next.call(req).await
}

/// The exposition: counters of this process and gauges read from the database now.
/// HEAD of `/metrics` ([`super::resources::without_body`]).
pub async fn head(state: web::Data<AppState>) -> HttpResponse {
    super::resources::without_body(scrape(state).await)
}

pub async fn scrape(state: web::Data<AppState>) -> ApiResult<HttpResponse> {
    let engine = match &state.admin {
        None => metrics::EngineGauges::Off,
        Some(a) => metrics::EngineGauges::On {
            guard: a
                .engine
                .policy
                .current()
                .blast_radius
                .map(|b| metrics::GuardGauge {
                    max_share: b.max_share,
                    window_seconds: b.window.num_seconds(),
                    min_population: b.min_population,
                }),
        },
    };
    let text = state
        .db(move |s| metrics::render(s, engine, crate::jobs::PRIORITY_LANE))
        .await?;
    Ok(HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(text))
}

/// `/metrics` alone, for the separate metrics listener (`[metrics] bind`): no authentication.
pub fn configure_alone(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    cfg.app_data(state)
        .service(
            super::scim_resource("/metrics", super::READ_METHODS)
                .route(web::get().to(scrape))
                .route(web::head().to(head)),
        )
        .default_service(web::to(super::not_found));
}
