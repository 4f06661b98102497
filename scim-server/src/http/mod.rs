//! The actix-web service: state, routes, middleware and the server loop. It mounts the SCIM
//! endpoints under [`BASE_PATH`] and the admin API under `/admin/v1` ([`admin`], thin handlers
//! over [`crate::admin::Admin`]).
//!
//! Handlers are thin: they parse the request (body, query, headers), call [`crate::service`] and
//! render the result. Every error becomes a SCIM error body in [`error`], and nowhere else.

pub mod admin;
pub mod body;
pub mod discovery;
pub mod error;
pub mod forwarded;
pub mod metrics;
pub mod middleware;
pub mod query;
pub mod rate_limit;
pub mod render;
pub mod resources;
pub mod tls;
pub mod transport;

use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use scim_schema::dialect::Dialect;
use scim_schema::schema::SchemaRegistry;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::auth::Authenticator;
use crate::config::{Config, DialectSetting};
use crate::error::HubError;
use crate::service::{self, Caller, Schemas, BASE_PATH};
use crate::store::Store;

use body::BodyLimit;
use error::{ApiError, ApiResult, SCIM_JSON};

/// Everything a handler needs, shared by all workers.
#[derive(Debug)]
pub struct AppState {
    pub config: Config,
    /// The registry and resolved resource schemas, built once at start.
    pub schemas: Arc<Schemas>,
    pub store: Store,
    pub auth: Authenticator,
    /// The lifecycle engine's admin operations (`/admin/v1`), when `serve --policy` runs it.
    pub admin: Option<crate::admin::Admin>,
    /// `[rate_limit]`: failed authentications and one-click links per source address.
    pub rate_limits: rate_limit::RateLimits,
    /// `[http] trusted_proxies`: whose forwarded headers count ([`forwarded`]).
    pub trusted_proxies: forwarded::TrustedProxies,
    /// Bounds concurrent blocking database work by the pool size, so blocking tasks never wait on
    /// a pool that they themselves exhaust.
    db_permits: Semaphore,
}

impl AppState {
    pub fn new(
        config: Config,
        registry: SchemaRegistry,
        store: Store,
        auth: Authenticator,
    ) -> anyhow::Result<Self> {
        let permits = config.db_pool_size.max(1) as usize;
        let schemas = Schemas::new(registry, config.strict).map_err(anyhow::Error::msg)?;
        let trusted_proxies = forwarded::TrustedProxies::parse(&config.http.trusted_proxies)
            .map_err(anyhow::Error::msg)?;
        Ok(AppState {
            rate_limits: rate_limit::RateLimits::new(&config.rate_limit),
            trusted_proxies,
            config,
            schemas: Arc::new(schemas),
            store,
            auth,
            admin: None,
            db_permits: Semaphore::new(permits),
        })
    }

    /// Serves the admin API (`/admin/v1`) over `admin`.
    pub fn with_admin(mut self, admin: crate::admin::Admin) -> Self {
        self.admin = Some(admin);
        self
    }

    /// The dialect of a request: the client's (or the global) `dialect` setting, or (`auto`)
    /// what its User-Agent announces.
    pub fn dialect(&self, client: &str, user_agent: Option<&str>) -> Dialect {
        match self.config.client_dialect(client) {
            DialectSetting::Auto => Dialect::detect(user_agent),
            DialectSetting::Standard => Dialect::Standard,
            DialectSetting::Strict => Dialect::Strict,
            DialectSetting::Entra => Dialect::EntraId,
            DialectSetting::Okta => Dialect::Okta,
            DialectSetting::Lenient => Dialect::Lenient,
        }
    }

    /// The dialect of an authenticated request (what [`Self::caller`] computes, without the
    /// policy lookups reads do not need).
    pub fn request_dialect(&self, req: &HttpRequest) -> Dialect {
        use actix_web::HttpMessage;
        let ext = req.extensions();
        let client = ext
            .get::<crate::auth::Principal>()
            .map_or("", |p| p.client.as_str());
        let ua = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        self.dialect(client, ua)
    }

    /// The [`Caller`] of an authenticated request.
    pub fn caller(&self, req: &HttpRequest) -> ApiResult<Caller> {
        use actix_web::HttpMessage;
        let (client, may_delete) = req
            .extensions()
            .get::<crate::auth::Principal>()
            .map(|p| (p.client.clone(), p.has(crate::auth::Scope::Delete)))
            .ok_or_else(|| ApiError::internal("no principal on an authenticated route"))?;
        let dialect = self.request_dialect(req);
        let sources = self
            .policy()
            .map(|p| {
                crate::service::SourceRules::for_client(&p, &client).granting_delete(may_delete)
            })
            .unwrap_or_default();
        Ok(Caller {
            client,
            dialect,
            sources,
            request_id: request_id(req),
        })
    }

    /// The access policy in force, when the engine runs (`serve --policy`).
    pub fn policy(&self) -> Option<Arc<crate::policy::Policy>> {
        self.admin.as_ref().map(|a| a.engine.policy.current())
    }

    /// Runs blocking store work on the blocking pool, at most `db_pool_size` at a time.
    pub async fn db<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, HubError> + Send + 'static,
    {
        // Bounded like the pool's own wait: when every slot stays taken (a slow or unreachable
        // database), the request is answered 503 with Retry-After instead of queueing unseen.
        let wait = self.config.database.pool_timeout();
        let _permit = match tokio::time::timeout(wait, self.db_permits.acquire()).await {
            Ok(permit) => permit.map_err(ApiError::internal)?,
            Err(_) => {
                return Err(HubError::Unavailable(format!(
                    "all {} database slots stayed busy for {} ms",
                    self.config.db_pool_size,
                    wait.as_millis()
                ))
                .into())
            }
        };
        let store = self.store.clone();
        Ok(web::block(move || f(&store)).await??)
    }

    /// Runs a read. On a SQLite file, when `bounded` (the read's work is bounded by a small
    /// constant, see `Store::search_is_bounded`), on this worker with the worker's own reader
    /// connection (`Store::read_here`): no semaphore and no hop to the blocking pool. Otherwise,
    /// and on PostgreSQL, like [`AppState::db`]: a read that may take long does not hold up the
    /// other requests of this worker.
    ///
    /// A read that finds on the worker that its work is not bounded after all
    /// (`HubError::NotHere`) runs again on the blocking pool.
    pub async fn read<T, F>(&self, bounded: bool, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: Fn(&Store) -> Result<T, HubError> + Send + 'static,
    {
        if bounded && self.store.reads_in_place() {
            match self.store.read_here(&f) {
                Err(HubError::NotHere) => tracing::debug!(
                    "a read went back to the blocking pool: its id ranks were dropped meanwhile \
                     (another process wrote)"
                ),
                answer => return Ok(answer?),
            }
        }
        self.db(f).await
    }

    /// Runs what a write does before it needs the store (parsing, validation, password
    /// hashing; see `service::Prehashed`), never on SQLite's group-commit writer (every write
    /// would queue behind it): on the blocking pool, bounded like [`AppState::db`], when
    /// `heavy` (`service::prepare_is_heavy`: an argon2 hash, thousands of members), else here.
    pub async fn prepare<T, F>(&self, heavy: bool, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, HubError> + Send + 'static,
    {
        if heavy {
            self.db(move |_| f()).await
        } else {
            Ok(f()?)
        }
    }

    /// Runs a single-resource write: through the store's group commit where it has one (see
    /// `Store::submit_write` for which writes qualify), else like [`AppState::db`]. `f` may run
    /// more than once (a group-commit batch runs again when one of its writes failed).
    pub async fn write<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Store) -> Result<T, HubError> + Send + 'static,
    {
        self.write_to(Written::Other, f).await
    }

    /// [`AppState::write`] for a SCIM PATCH or PUT of User `user_id`, whose first read for
    /// change is that user's row (`Store::submit_user_write`).
    pub async fn write_user<T, F>(&self, user_id: &str, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Store) -> Result<T, HubError> + Send + 'static,
    {
        self.write_to(Written::User(user_id), f).await
    }

    /// [`AppState::write`] for a SCIM create, which reads nothing before it inserts
    /// (`Store::submit_create`).
    pub async fn write_create<T, F>(&self, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Store) -> Result<T, HubError> + Send + 'static,
    {
        self.write_to(Written::Create, f).await
    }

    async fn write_to<T, F>(&self, what: Written<'_>, f: F) -> ApiResult<T>
    where
        T: Send + 'static,
        F: FnMut(&Store) -> Result<T, HubError> + Send + 'static,
    {
        if !self.store.batches_writes() {
            return self.db(f).await;
        }
        let answer = match what {
            Written::User(id) => self.store.submit_user_write(id, f)?,
            Written::Create => self.store.submit_create(f)?,
            Written::Other => self.store.submit_write(f)?,
        };
        answer
            .await
            .map_err(|_| ApiError::internal("the write was dropped by an internal error"))?
            .map_err(Into::into)
    }
}

/// What a single-resource write is, for the store's group commit.
enum Written<'a> {
    /// A PATCH or PUT of this User.
    User(&'a str),
    Create,
    Other,
}

/// `scheme://host/scim/v2` as the client addressed us (for `Location` and `meta.location`):
/// forwarded headers count only from a trusted proxy ([`forwarded::origin`]).
pub fn base_url(req: &HttpRequest) -> String {
    // Built on the scheme's own buffer: every resource response needs it, and `format!`
    // showed in the point read's profile.
    let forwarded::Origin { mut scheme, host } = forwarded::origin(req);
    scheme.reserve(3 + host.len() + BASE_PATH.len());
    scheme.push_str("://");
    scheme.push_str(&host);
    scheme.push_str(BASE_PATH);
    scheme
}

/// A response with a SCIM JSON body.
pub fn scim_response(status: StatusCode, body: &Value) -> HttpResponse {
    scim_response_of(status, body)
}

/// A response with any serialisable body as SCIM JSON, written straight to bytes (`to_string`
/// would go through `fmt::Display`, measurably slower on 100-resource pages).
pub fn scim_response_of(status: StatusCode, body: &impl serde::Serialize) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(bytes) => HttpResponse::build(status)
            .insert_header((header::CONTENT_TYPE, SCIM_JSON))
            .body(bytes),
        // Only a map with non-string keys fails to serialise; none is built here.
        Err(e) => actix_web::ResponseError::error_response(&ApiError::internal(format!(
            "response not serialisable: {e}"
        ))),
    }
}

/// 404 as a SCIM error for any path no route serves (the SCIM API and the admin API).
pub(crate) async fn not_found(req: HttpRequest) -> ApiResult<HttpResponse> {
    Err(ApiError::NotFound(format!(
        "No endpoint at {}.",
        req.path()
    )))
}

/// 405 as a SCIM error for a method a route does not serve.
pub(crate) async fn method_not_allowed(req: HttpRequest) -> ApiResult<HttpResponse> {
    Err(not_allowed(&req, None))
}

fn not_allowed(req: &HttpRequest, allow: Option<&'static str>) -> ApiError {
    ApiError::MethodNotAllowed {
        detail: format!("{} is not allowed on {}.", req.method(), req.path()),
        allow,
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.read(true, |s| s.ping()).await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .content_type("text/plain")
                .body("database unavailable")
        }
    }
}

/// A resource whose other methods answer 405 with a SCIM error.
pub(crate) fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(method_not_allowed))
}

/// A SCIM resource serving `allow` (as the `Allow` header spells them): other methods answer
/// 405 with a SCIM error and that header (RFC 9110 §15.5.6).
pub(crate) fn scim_resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |req: HttpRequest| async move {
        Err::<HttpResponse, _>(not_allowed(&req, Some(allow)))
    }))
}

/// A User or Group by id at `path` (the hot route and the general one alike).
fn resource_by_id(path: &str) -> actix_web::Resource {
    scim_resource(path, BY_ID_METHODS)
        .route(web::get().to(resources::get))
        .route(web::put().to(resources::replace))
        .route(web::patch().to(resources::patch))
        .route(web::delete().to(resources::delete))
        .route(web::head().to(resources::head))
}

/// The Users or Groups endpoint at `path` (the hot route and the general one alike).
fn resource_endpoint(path: &str) -> actix_web::Resource {
    scim_resource(path, ENDPOINT_METHODS)
        .route(web::get().to(resources::list))
        .route(web::post().to(resources::create))
        .route(web::head().to(resources::head_list))
}

/// The methods of a SCIM resource by id, of an endpoint, and of a read-only or POST-only one.
const BY_ID_METHODS: &str = "GET, HEAD, PUT, PATCH, DELETE";
const ENDPOINT_METHODS: &str = "GET, HEAD, POST";
pub(crate) const READ_METHODS: &str = "GET, HEAD";
const POST_METHODS: &str = "POST";

/// The hot routes of the SCIM scope, tried before all others: a User or Group by id, and the
/// two endpoints. The constraints keep them off every path a later route serves (`.search`,
/// discovery, `/Me`); the general `/{kind}` routes below still take what they leave.
const RESOURCE_BY_ID: &str = "/{kind:(?i-u:users|groups)}/{id:[^/.][^/]*}";
const RESOURCE_ENDPOINT: &str = "/{kind:(?i-u:users|groups)}";

/// The metrics label of a request path the hot routes serve, read off the path without a
/// second pass through the router (`HttpRequest::match_pattern` runs the route regexes again,
/// which cost as much as the routing itself). `None` for anything else, including
/// percent-encoded paths, which the router decodes first: those take `match_pattern`.
pub(crate) fn hot_route_label(path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix(BASE_PATH)?.strip_prefix('/')?;
    if rest.contains('%') {
        return None;
    }
    let (kind, id) = match rest.split_once('/') {
        Some((kind, id)) => (kind, Some(id)),
        None => (rest, None),
    };
    service::kind_of_endpoint(kind)?;
    match id {
        None => Some("/scim/v2/{kind}"),
        Some(id) if !id.is_empty() && !id.starts_with('.') && !id.contains('/') => {
            Some("/scim/v2/{kind}/{id}")
        }
        Some(_) => None,
    }
}

/// A route pattern as a metrics label: `{name:regex}` segments written `{name}`.
pub(crate) fn route_label(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut depth = 0usize;
    let mut skipping = false;
    for ch in pattern.chars() {
        match ch {
            '{' => {
                depth += 1;
                if skipping {
                    continue;
                }
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if skipping {
                    if depth > 0 {
                        continue;
                    }
                    skipping = false;
                }
            }
            ':' if depth == 1 && !skipping => {
                skipping = true;
                continue;
            }
            _ if skipping => continue,
            _ => {}
        }
        out.push(ch);
    }
    out
}

/// The application: every route, for `App::new().configure(...)` in the server and in tests.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    let limit = BodyLimit(state.config.max_body_bytes);
    let bulk_limit = BodyLimit(state.config.bulk_max_payload_bytes);
    let state_metrics_on_main = state.config.metrics.enabled && state.config.metrics.bind.is_none();
    cfg.app_data(state)
        .app_data(limit)
        .service(
            web::resource("/healthz")
                .route(web::get().to(healthz))
                .route(web::head().to(healthz)),
        )
        .service(
            web::resource("/readyz")
                .route(web::get().to(readyz))
                .route(web::head().to(readyz)),
        )
        .configure(|cfg| {
            // On the main listener only when no separate metrics listener is configured.
            if state_metrics_on_main {
                cfg.service(
                    scim_resource("/metrics", READ_METHODS)
                        .wrap(actix_web::middleware::from_fn(
                            metrics::require_metrics_scope,
                        ))
                        .wrap(actix_web::middleware::from_fn(middleware::identify_only))
                        .route(web::get().to(metrics::scrape))
                        .route(web::head().to(metrics::head)),
                );
            }
        })
        .service(
            // Before the admin API: actix tries routes in order, and each route with a `{...}`
            // segment costs a regex run (and an allocation) even when it does not match. The
            // SCIM paths take the load; `/admin` never shares a prefix with them.
            web::scope(BASE_PATH)
                .wrap(actix_web::middleware::from_fn(middleware::authenticate))
                // The hot routes first, constrained so they claim nothing a later route serves:
                // a resource by id (an id starting with `.` is `.search` or left to the
                // general route below), then the endpoints themselves.
                .service(resource_by_id(RESOURCE_BY_ID))
                .service(resource_endpoint(RESOURCE_ENDPOINT))
                .service(
                    scim_resource("/ServiceProviderConfig", READ_METHODS)
                        .route(web::get().to(discovery::get_service_provider_config))
                        .route(web::head().to(discovery::get_service_provider_config)),
                )
                .service(
                    scim_resource("/ResourceTypes", READ_METHODS)
                        .route(web::get().to(discovery::list_resource_types))
                        .route(web::head().to(discovery::list_resource_types)),
                )
                .service(
                    scim_resource("/ResourceTypes/{name}", READ_METHODS)
                        .route(web::get().to(discovery::get_resource_type))
                        .route(web::head().to(discovery::get_resource_type)),
                )
                .service(
                    scim_resource("/Schemas", READ_METHODS)
                        .route(web::get().to(discovery::list_schemas))
                        .route(web::head().to(discovery::list_schemas)),
                )
                .service(
                    scim_resource("/Schemas/{id}", READ_METHODS)
                        .route(web::get().to(discovery::get_schema))
                        .route(web::head().to(discovery::get_schema)),
                )
                .service(
                    scim_resource("/.search", POST_METHODS)
                        .route(web::post().to(resources::search_all)),
                )
                .service(
                    scim_resource("/Bulk", POST_METHODS)
                        .app_data(bulk_limit)
                        .route(web::post().to(resources::bulk)),
                )
                .service(resource("/Me").to(resources::me))
                .service(resource("/Me/{rest:.*}").to(resources::me))
                .service(
                    scim_resource("/{kind}/.search", POST_METHODS)
                        .route(web::post().to(resources::search)),
                )
                .service(resource_endpoint("/{kind}"))
                .service(resource_by_id("/{kind}/{id}"))
                .default_service(web::to(not_found)),
        )
        .configure(admin::configure)
        .default_service(web::to(not_found));
}

/// Binds, prints `listening on ADDR` on stdout, and serves until SIGTERM/SIGINT.
///
/// The server is what `actix_web::HttpServer::bind` + `run` build, assembled here so that each
/// accepted connection is wrapped in [`transport::FrontDoor`] before actix-http's HTTP/1 codec
/// reads it: the same listeners (backlog 1024, `SO_REUSEADDR`), worker count, graceful shutdown
/// (signals, `shutdown_timeout`), keep-alive and client timeouts as `HttpServer`'s defaults.
pub async fn serve(state: AppState) -> anyhow::Result<()> {
    let state = web::Data::new(state);
    let bind = state.config.bind.clone();
    let certs = match (&state.config.tls.cert, &state.config.tls.key) {
        (Some(cert), Some(key)) => Some(tls::CertReloader::load(cert, key)?),
        (None, None) => None,
        _ => anyhow::bail!("[tls] needs both `cert` and `key` (--tls-cert and --tls-key)"),
    };
    let listeners =
        bind_listeners(&bind).map_err(|e| anyhow::anyhow!("cannot bind {bind}: {e}"))?;
    if certs.is_none() {
        let addrs = listeners
            .iter()
            .map(|l| l.local_addr())
            .collect::<Result<Vec<_>, _>>()?;
        tls::check_plain_http(&addrs, state.config.allow_plain_http).map_err(anyhow::Error::msg)?;
    }
    let acceptor = match &certs {
        Some(certs) => {
            certs.spawn_watcher(std::time::Duration::from_secs(
                state.config.tls.reload_check_secs.max(1),
            ));
            Some(tokio_rustls::TlsAcceptor::from(tls::server_config(certs)?))
        }
        None => None,
    };
    let secure = acceptor.is_some();
    let mut builder =
        actix_server::ServerBuilder::default().shutdown_timeout(state.config.shutdown_timeout_secs);
    if let Some(w) = state.config.workers {
        builder = builder.workers(w);
    }
    let graceful = builder.graceful_shutdown_signal();
    let mut addrs = Vec::new();
    for listener in listeners {
        let addr = listener.local_addr()?;
        addrs.push(addr);
        let app_state = state.clone();
        let graceful = graceful.clone();
        let acceptor = acceptor.clone();
        builder = builder.listen(format!("scimhub-{addr}"), listener, move || {
            // actix builds each worker's services on that worker's thread.
            crate::scheduling::settle_request_thread();
            let app_state = app_state.clone();
            let graceful = graceful.clone();
            let acceptor = acceptor.clone();
            // The last `wrap` runs first: the log sees the rate limiter's 429s, and the request
            // metrics see everything the log sees.
            let app = actix_web::App::new()
                .wrap(actix_web::middleware::from_fn(middleware::limit_rates))
                .wrap(actix_web::middleware::from_fn(middleware::limit_h2_heads))
                .wrap(actix_web::middleware::from_fn(middleware::log_requests))
                .wrap(actix_web::middleware::from_fn(metrics::count_requests))
                .configure(|cfg| configure(cfg, app_state));
            let http = actix_http::HttpService::build()
                .graceful_shutdown_signal(move || {
                    let signal = graceful.clone();
                    async move { signal.notified().await }
                })
                // actix_web::HttpServer's defaults, which this server ran with before.
                .keep_alive(actix_http::KeepAlive::default())
                .client_request_timeout(std::time::Duration::from_secs(5))
                .client_disconnect_timeout(std::time::Duration::from_secs(1))
                .h1_allow_half_closed(true)
                .local_addr(addr)
                .finish(actix_service::map_config(
                    actix_service::IntoServiceFactory::into_factory(app),
                    // `meta.location` falls back to this host for a request without `Host`,
                    // as under HttpServer. (`AppConfig::new` is crate-private in actix-web.)
                    // `secure` makes the scheme `https` (see `forwarded::origin`).
                    move |_| {
                        actix_web::dev::AppConfig::__priv_test_new(secure, addr.to_string(), addr)
                    },
                ));
            use actix_service::ServiceFactoryExt as _;
            actix_service::fn_service(move |io: actix_web::rt::net::TcpStream| {
                let acceptor = acceptor.clone();
                async move {
                    let peer = io.peer_addr().ok();
                    // TLS goes under the front door: HTTP/1 over TLS is scanned like plain
                    // HTTP/1. An HTTP/2 connection starts with the preface, which the front
                    // door passes through untouched; actix's h2 dispatcher takes it from there
                    // (its request limits: `middleware::limit_h2_heads` and the body limits).
                    let (io, h2) = match &acceptor {
                        None => (tls::Conn::Plain(io), false),
                        Some(acceptor) => tls::Conn::accept(acceptor, io).await.map_err(|e| {
                            tracing::debug!(?peer, error = %e, "TLS handshake failed");
                            actix_http::error::DispatchError::Io(e)
                        })?,
                    };
                    let protocol = if h2 {
                        actix_http::Protocol::Http2
                    } else {
                        actix_http::Protocol::Http1
                    };
                    Ok::<_, actix_http::error::DispatchError>((
                        transport::FrontDoor::new(io),
                        protocol,
                        peer,
                    ))
                }
            })
            .and_then(http)
        })?;
    }
    if let Some(bind) = state
        .config
        .metrics
        .bind
        .clone()
        .filter(|_| state.config.metrics.enabled)
    {
        builder = listen_metrics(builder, &bind, &state)?;
    }
    for addr in &addrs {
        let scheme = if secure { "https" } else { "http" };
        tracing::info!(%addr, scheme, "listening");
    }
    if let Some(addr) = addrs.first() {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    // actix installs SIGTERM/SIGINT/SIGQUIT handlers: in-flight requests finish (graceful stop).
    builder.run().await?;
    tracing::info!("stopped");
    Ok(())
}

/// The separate metrics listener (`[metrics] bind`): `/metrics` only, without authentication,
/// plain HTTP/1 (a scraper on a trusted network, not a SCIM client).
fn listen_metrics(
    mut builder: actix_server::ServerBuilder,
    bind: &str,
    state: &web::Data<AppState>,
) -> anyhow::Result<actix_server::ServerBuilder> {
    let listeners = bind_listeners(bind)
        .map_err(|e| anyhow::anyhow!("cannot bind the metrics listener {bind}: {e}"))?;
    for listener in listeners {
        let addr = listener.local_addr()?;
        tracing::info!(%addr, "metrics listening");
        let app_state = state.clone();
        builder = builder.listen(format!("scimhub-metrics-{addr}"), listener, move || {
            let app_state = app_state.clone();
            let app =
                actix_web::App::new().configure(|cfg| metrics::configure_alone(cfg, app_state));
            let http = actix_http::HttpService::build()
                .client_request_timeout(std::time::Duration::from_secs(5))
                .local_addr(addr)
                .finish(actix_service::map_config(
                    actix_service::IntoServiceFactory::into_factory(app),
                    move |_| {
                        actix_web::dev::AppConfig::__priv_test_new(false, addr.to_string(), addr)
                    },
                ));
            use actix_service::ServiceFactoryExt as _;
            actix_service::fn_service(|io: actix_web::rt::net::TcpStream| async move {
                let peer = io.peer_addr().ok();
                Ok::<_, actix_http::error::DispatchError>((io, actix_http::Protocol::Http1, peer))
            })
            .and_then(http)
        })?;
    }
    Ok(builder)
}

/// One listener per address `bind` resolves to, as `HttpServer::bind` makes them.
fn bind_listeners(bind: &str) -> std::io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::ToSocketAddrs;
    let mut listeners = Vec::new();
    let mut last_err = None;
    for addr in bind.to_socket_addrs()? {
        let made = (|| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(1024)?;
            Ok::<_, std::io::Error>(std::net::TcpListener::from(socket))
        })();
        match made {
            Ok(l) => listeners.push(l),
            Err(e) => last_err = Some(e),
        }
    }
    if listeners.is_empty() {
        return Err(last_err.unwrap_or_else(|| std::io::Error::other("no address to bind")));
    }
    Ok(listeners)
}

/// The request id the audit chain records: the client's `X-Request-Id` when it is 1 to 128
/// visible ASCII characters, else a fresh UUID.
fn request_id(req: &HttpRequest) -> String {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_route_labels_follow_the_hot_routes() {
        let by_id = Some("/scim/v2/{kind}/{id}");
        let endpoint = Some("/scim/v2/{kind}");
        assert_eq!(hot_route_label("/scim/v2/Users/2819c223"), by_id);
        assert_eq!(hot_route_label("/scim/v2/groups/x"), by_id);
        assert_eq!(hot_route_label("/scim/v2/USERS"), endpoint);
        assert_eq!(hot_route_label("/scim/v2/Groups"), endpoint);
        // What the hot routes leave to others.
        for path in [
            "/scim/v2/Users/.search",
            "/scim/v2/Users/",
            "/scim/v2/Users/a/b",
            "/scim/v2/Users/%2Ex",
            "/scim/v2/Usersx/1",
            "/scim/v2/Me",
            "/scim/v2/ResourceTypes/User",
            "/scim/v2",
            "/admin/v1/users",
            "/scim/v2Users",
        ] {
            assert_eq!(hot_route_label(path), None, "{path}");
        }
    }

    #[test]
    fn route_labels_drop_segment_regexes() {
        assert_eq!(
            route_label(&format!("{BASE_PATH}{RESOURCE_BY_ID}")),
            "/scim/v2/{kind}/{id}"
        );
        assert_eq!(
            route_label(&format!("{BASE_PATH}{RESOURCE_ENDPOINT}")),
            "/scim/v2/{kind}"
        );
        assert_eq!(route_label("/scim/v2/Me/{rest:.*}"), "/scim/v2/Me/{rest}");
        assert_eq!(route_label("/x/{n:[0-9]{2,3}}/y"), "/x/{n}/y");
        assert_eq!(
            route_label("/scim/v2/{kind}/.search"),
            "/scim/v2/{kind}/.search"
        );
    }

    /// A read that the worker finds unbounded after all (`NotHere`) is answered from the
    /// blocking pool, never as an error; any other answer is the worker's.
    #[actix_web::test]
    async fn reads_sent_back_from_the_worker_run_on_the_pool() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let path = std::env::temp_dir().join(format!("scimhub-here-{}.db", uuid::Uuid::now_v7()));
        let store = Store::open(&format!("sqlite://{}", path.display())).expect("store");
        assert!(store.reads_in_place());
        let state = AppState::new(
            Config::default(),
            crate::service::schemas::registry(),
            store,
            Authenticator::new(None, None),
        )
        .expect("state");
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let answer = state
            .read(true, move |_| {
                match counted.fetch_add(1, Ordering::SeqCst) {
                    0 => Err(HubError::NotHere),
                    n => Ok(n),
                }
            })
            .await;
        assert_eq!(answer.ok(), Some(1));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let answer = state.read(true, |_| Ok(7)).await;
        assert_eq!(answer.ok(), Some(7));
        let failed = state.read(true, |_| Err::<(), _>(HubError::NotFound)).await;
        assert!(failed.is_err());
        drop(state);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
