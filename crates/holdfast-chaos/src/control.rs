//! HTTP control API of the fault proxies: create and delete named proxies,
//! add and remove their faults, read their counters.
//!
//! | Method and path                      | Answer                              |
//! |--------------------------------------|-------------------------------------|
//! | `GET /proxies`                       | 200, every proxy                    |
//! | `POST /proxies` `{name, listen, upstream}` | 201, the proxy; 409 `name_taken`, 502 `bind_failed` |
//! | `GET /proxies/{name}`                | 200, the proxy; 404 `unknown_proxy` |
//! | `DELETE /proxies/{name}`             | 204 (the proxy is shut down)        |
//! | `POST /proxies/{name}/faults` (a [`Fault`]) | 201 `{"id": n}`; 400/415/422 `invalid_fault` |
//! | `DELETE /proxies/{name}/faults/{id}` | 204; 404 `unknown_fault`            |
//! | `DELETE /proxies/{name}/faults`      | 204 (all faults cleared)            |
//!
//! A proxy is shown as `{name, listen, upstream, faults: [{id, kind, ...}],
//! stats}`. Errors are `application/problem+json` documents
//! `{type, title, status, detail, code}` whose `code` is stable.
//!
//! [`serve`] runs one proxy named `default` plus this API, for the CLI.
//! With a token ([`router_with_token`]), every request but a `GET` needs
//! `Authorization: Bearer TOKEN` (401 `unauthorized` otherwise); the CLI
//! asks for one before it binds the API anywhere but loopback.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use holdfast_core::{PROBLEM_JSON, Problem};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::proxy::{Fault, FaultId, Proxy, ProxyStats};

/// The named proxies the API manages. A cheap `Clone`-able handle: clones
/// share the same proxies.
#[derive(Clone, Default, Debug)]
pub struct Registry {
    /// Held across `Proxy::start` on create, so two creates of one name
    /// cannot both bind; hence an async mutex.
    proxies: Arc<tokio::sync::Mutex<BTreeMap<String, Proxy>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Starts a proxy and registers it under `name`.
    pub async fn create(
        &self,
        name: &str,
        listen: SocketAddr,
        upstream: &str,
    ) -> Result<Proxy, ControlError> {
        let mut proxies = self.proxies.lock().await;
        if proxies.contains_key(name) {
            return Err(ControlError::NameTaken(name.to_owned()));
        }
        let proxy = Proxy::start(name, listen, upstream)
            .await
            .map_err(|error| ControlError::BindFailed(format!("{listen}: {error}")))?;
        proxies.insert(name.to_owned(), proxy.clone());
        Ok(proxy)
    }

    /// Registers a proxy started elsewhere; gives it back if its name is
    /// taken.
    pub async fn insert(&self, proxy: Proxy) -> Result<(), Proxy> {
        let mut proxies = self.proxies.lock().await;
        if proxies.contains_key(proxy.name()) {
            return Err(proxy);
        }
        proxies.insert(proxy.name().to_owned(), proxy);
        Ok(())
    }

    /// The proxy named `name`.
    pub async fn get(&self, name: &str) -> Option<Proxy> {
        self.proxies.lock().await.get(name).cloned()
    }

    /// Every proxy, by name.
    pub async fn list(&self) -> Vec<Proxy> {
        self.proxies.lock().await.values().cloned().collect()
    }

    /// Unregisters the proxy named `name` and shuts it down; `false` if
    /// there was none.
    pub async fn remove(&self, name: &str) -> bool {
        let removed = self.proxies.lock().await.remove(name);
        match removed {
            Some(proxy) => {
                proxy.shutdown().await;
                true
            }
            None => false,
        }
    }

    /// Shuts every proxy down and empties the registry.
    pub async fn shutdown_all(&self) {
        let proxies = std::mem::take(&mut *self.proxies.lock().await);
        for proxy in proxies.into_values() {
            proxy.shutdown().await;
        }
    }
}

/// A failure of a control request, answered as `application/problem+json`.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No proxy has this name.
    #[error("no proxy is named {0:?}")]
    UnknownProxy(String),
    /// The proxy has no fault with this id.
    #[error("proxy {proxy:?} has no fault {id}")]
    UnknownFault {
        /// The proxy's name.
        proxy: String,
        /// The id asked for, as given.
        id: String,
    },
    /// The fault is not valid JSON, not a known fault, or has bad values.
    #[error("{detail}")]
    InvalidFault {
        /// 400, 415 or 422.
        status: StatusCode,
        /// What is wrong.
        detail: String,
    },
    /// The body of a create request is not valid.
    #[error("{detail}")]
    InvalidRequest {
        /// 400, 415 or 422.
        status: StatusCode,
        /// What is wrong.
        detail: String,
    },
    /// A proxy with this name exists already.
    #[error("a proxy is already named {0:?}")]
    NameTaken(String),
    /// The listen address could not be bound.
    #[error("could not bind {0}")]
    BindFailed(String),
    /// A change without the token.
    #[error("changes need the control token, as Authorization: Bearer TOKEN")]
    Unauthorized,
}

impl ControlError {
    /// The stable machine-readable code and the title that goes with it.
    fn code_and_title(&self) -> (&'static str, &'static str) {
        match self {
            ControlError::UnknownProxy(_) => ("unknown_proxy", "Unknown proxy"),
            ControlError::UnknownFault { .. } => ("unknown_fault", "Unknown fault"),
            ControlError::InvalidFault { .. } => ("invalid_fault", "Invalid fault"),
            ControlError::InvalidRequest { .. } => ("invalid_request", "Invalid request"),
            ControlError::NameTaken(_) => ("name_taken", "Name taken"),
            ControlError::BindFailed(_) => ("bind_failed", "Bind failed"),
            ControlError::Unauthorized => ("unauthorized", "Unauthorized"),
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.code_and_title().0
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ControlError::UnknownProxy(_) | ControlError::UnknownFault { .. } => {
                StatusCode::NOT_FOUND
            }
            ControlError::InvalidFault { status, .. }
            | ControlError::InvalidRequest { status, .. } => *status,
            ControlError::NameTaken(_) => StatusCode::CONFLICT,
            ControlError::BindFailed(_) => StatusCode::BAD_GATEWAY,
            ControlError::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (code, title) = self.code_and_title();
        let problem = Problem::new(status.as_u16(), code, title, self.to_string());
        let mut response = (
            status,
            [(header::CONTENT_TYPE, PROBLEM_JSON)],
            Json(problem),
        )
            .into_response();
        if matches!(self, ControlError::Unauthorized) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"holdfast chaos proxy\""),
            );
        }
        response
    }
}

/// How a proxy is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProxyView {
    /// Its name.
    pub name: String,
    /// The address it listens on.
    pub listen: SocketAddr,
    /// Where it forwards to.
    pub upstream: String,
    /// The faults in force, in the order they were added.
    pub faults: Vec<FaultView>,
    /// Its counters.
    pub stats: ProxyStats,
}

impl From<&Proxy> for ProxyView {
    fn from(proxy: &Proxy) -> ProxyView {
        ProxyView {
            name: proxy.name().to_owned(),
            listen: proxy.local_addr(),
            upstream: proxy.upstream().to_owned(),
            faults: proxy
                .faults()
                .into_iter()
                .map(|(id, fault)| FaultView { id, fault })
                .collect(),
            stats: proxy.stats(),
        }
    }
}

/// A fault with its id: `{"id": 1, "kind": "latency", "ms": 200, ...}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultView {
    /// Its id, for removal.
    pub id: FaultId,
    /// The fault.
    #[serde(flatten)]
    pub fault: Fault,
}

/// Body of `POST /proxies`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateProxy {
    /// Name, unique among the proxies.
    pub name: String,
    /// Address to listen on (port 0 for a free one).
    pub listen: SocketAddr,
    /// `host:port` to forward to.
    pub upstream: String,
}

/// Body of the answer to `POST /proxies/{name}/faults`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddedFault {
    /// Id of the new fault.
    pub id: FaultId,
}

/// The control API over `registry`, with changes open to anyone who can
/// reach it (keep it on loopback).
pub fn router(registry: Registry) -> Router {
    router_with_token(registry, None)
}

/// The control API over `registry`; with `token`, every request but a
/// `GET` must carry it.
pub fn router_with_token(registry: Registry, token: Option<String>) -> Router {
    let routes = routes(registry);
    match token.filter(|t| !t.is_empty()) {
        None => routes,
        Some(token) => routes.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let allowed = req.method() == axum::http::Method::GET
                    || crate::stack_control::constant_time_eq(
                        crate::stack_control::bearer_token(req.headers()).as_bytes(),
                        token.as_bytes(),
                    );
                async move {
                    if allowed {
                        next.run(req).await
                    } else {
                        ControlError::Unauthorized.into_response()
                    }
                }
            },
        )),
    }
}

fn routes(registry: Registry) -> Router {
    Router::new()
        .route("/proxies", get(list_proxies).post(create_proxy))
        .route("/proxies/{name}", get(get_proxy).delete(delete_proxy))
        .route(
            "/proxies/{name}/faults",
            get(list_faults).post(add_fault).delete(clear_faults),
        )
        .route("/proxies/{name}/faults/{id}", delete(remove_fault))
        .with_state(registry)
}

async fn list_proxies(State(registry): State<Registry>) -> Json<Vec<ProxyView>> {
    Json(registry.list().await.iter().map(ProxyView::from).collect())
}

async fn create_proxy(
    State(registry): State<Registry>,
    body: Result<Json<CreateProxy>, JsonRejection>,
) -> Result<(StatusCode, Json<ProxyView>), ControlError> {
    let Json(request) = body.map_err(|rejection| ControlError::InvalidRequest {
        status: rejection.status(),
        detail: rejection.body_text(),
    })?;
    if request.name.is_empty() || request.upstream.is_empty() {
        return Err(ControlError::InvalidRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: "name and upstream must not be empty".to_owned(),
        });
    }
    let proxy = registry
        .create(&request.name, request.listen, &request.upstream)
        .await?;
    Ok((StatusCode::CREATED, Json(ProxyView::from(&proxy))))
}

async fn find(registry: &Registry, name: &str) -> Result<Proxy, ControlError> {
    registry
        .get(name)
        .await
        .ok_or_else(|| ControlError::UnknownProxy(name.to_owned()))
}

async fn get_proxy(
    State(registry): State<Registry>,
    Path(name): Path<String>,
) -> Result<Json<ProxyView>, ControlError> {
    Ok(Json(ProxyView::from(&find(&registry, &name).await?)))
}

async fn delete_proxy(
    State(registry): State<Registry>,
    Path(name): Path<String>,
) -> Result<StatusCode, ControlError> {
    if registry.remove(&name).await {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ControlError::UnknownProxy(name))
    }
}

async fn list_faults(
    State(registry): State<Registry>,
    Path(name): Path<String>,
) -> Result<Json<Vec<FaultView>>, ControlError> {
    Ok(Json(ProxyView::from(&find(&registry, &name).await?).faults))
}

async fn add_fault(
    State(registry): State<Registry>,
    Path(name): Path<String>,
    body: Result<Json<Fault>, JsonRejection>,
) -> Result<(StatusCode, Json<AddedFault>), ControlError> {
    let proxy = find(&registry, &name).await?;
    let Json(fault) = body.map_err(|rejection| ControlError::InvalidFault {
        status: rejection.status(),
        detail: rejection.body_text(),
    })?;
    fault
        .validate()
        .map_err(|detail| ControlError::InvalidFault {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail,
        })?;
    let id = proxy.add(fault);
    Ok((StatusCode::CREATED, Json(AddedFault { id })))
}

async fn remove_fault(
    State(registry): State<Registry>,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ControlError> {
    let proxy = find(&registry, &name).await?;
    let unknown = || ControlError::UnknownFault {
        proxy: name.clone(),
        id: id.clone(),
    };
    let fault_id = id.parse().map(FaultId).map_err(|_| unknown())?;
    if proxy.remove(fault_id) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(unknown())
    }
}

async fn clear_faults(
    State(registry): State<Registry>,
    Path(name): Path<String>,
) -> Result<StatusCode, ControlError> {
    find(&registry, &name).await?.clear();
    Ok(StatusCode::NO_CONTENT)
}

/// Starts one proxy named `default` (`listen` to `upstream`) and the
/// control API on `control` (changes needing `token`, if any), and runs
/// until `shutdown` is cancelled; then stops the API and every proxy
/// (including any created through the API).
pub async fn serve(
    listen: SocketAddr,
    upstream: String,
    control: SocketAddr,
    token: Option<String>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let registry = Registry::new();
    let proxy = Proxy::start("default", listen, upstream.clone()).await?;
    let proxy_addr = proxy.local_addr();
    if let Err(proxy) = registry.insert(proxy).await {
        proxy.shutdown().await;
    }
    let listener = tokio::net::TcpListener::bind(control).await?;
    let control_addr = listener.local_addr()?;
    tracing::info!(listen = %proxy_addr, %upstream, control = %control_addr, "chaos proxy running");
    let served = axum::serve(listener, router_with_token(registry.clone(), token))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    registry.shutdown_all().await;
    tracing::info!("chaos proxy stopped");
    served
}
