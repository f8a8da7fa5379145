//! What every role that serves HTTP is built on: its listeners and the
//! owner of its background tasks.
//!
//! A role's `build` binds first, through [`RoleListeners::bind`], so a taken
//! port fails the start before Redis or a database is touched; it then
//! starts its background work on [`RoleListeners::tasks`]. Its
//! `run_until_stopped` hands its routers to [`RoleListeners::serve`] (public
//! and admin listener, with a drain) or [`RoleListeners::serve_until`]
//! (public listener only), which stop and await every task once the public
//! listener has drained.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use holdfast_core::Keys;
use holdfast_redis::Redis;
use holdfast_resilience::Tasks;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::health::{Health, admin_router, health_routes, logs_routes};
use crate::http::{StackConfig, serve, serve_admin, stack, stop_tasks};
use crate::registry::{self, Instance, Registration};
use crate::start::{StartError, bind};

/// A role's bound listeners, the limits of its public one, and its tasks.
pub(crate) struct RoleListeners {
    /// The role's API (and `/health*`).
    listener: TcpListener,
    /// `/health*` and `/metrics`, when the role has an admin listener.
    admin: Option<TcpListener>,
    /// Limits of the public listener's middleware stack.
    stack: StackConfig,
    /// Set when the drain begins; the role's readiness and handlers read it.
    draining: Arc<AtomicBool>,
    /// The owner of the role's background tasks (Redis supervisor, readers,
    /// caches, the admin listener); stopped and awaited once the public
    /// listener has drained.
    tasks: Tasks,
    /// The role's entry in the instance registry, deleted after the drain.
    registration: Option<Registration>,
}

impl RoleListeners {
    /// Binds the public listener and the admin one, if any (port 0 picks a
    /// free one).
    ///
    /// # Errors
    /// [`StartError::Bind`] naming the address that could not be bound.
    pub(crate) async fn bind(
        listen: SocketAddr,
        admin_listen: Option<SocketAddr>,
        stack: StackConfig,
    ) -> Result<Self, StartError> {
        // Install the recorder before anything records, or early figures are lost.
        let _ = holdfast_telemetry::metrics_handle();
        let listener = bind(listen).await?;
        let admin = match admin_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Self {
            listener,
            admin,
            stack,
            draining: Arc::new(AtomicBool::new(false)),
            tasks: Tasks::new(),
            registration: None,
        })
    }

    /// The owner of the role's background tasks.
    pub(crate) fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Announces this role in the instance registry under `keys`, as one
    /// of its tasks; without an admin listener, the public one (which
    /// serves `/health*` too) is given as its admin URL.
    pub(crate) fn announce(&mut self, role: &str, redis: &Redis, keys: &Keys) {
        let public = self.listener.local_addr().ok();
        let admin = self
            .admin
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .or(public);
        let instance = Instance::new(role, admin, public);
        self.registration = Some(registry::register(redis, keys, instance, &self.tasks));
    }

    /// Limits of the public listener.
    pub(crate) fn stack(&self) -> &StackConfig {
        &self.stack
    }

    /// The router of a role with one listener (the exporter, the
    /// dashboard): `routes`, `/health*` of `health` and `/logs`, inside
    /// the middleware stack.
    pub(crate) fn single_listener_router(&self, health: Health, routes: Router) -> Router {
        stack(
            health_routes(health).merge(logs_routes()).merge(routes),
            &self.stack,
        )
    }

    /// The flag [`Self::serve`] sets when the drain begins.
    pub(crate) fn draining(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// The address the public listener is bound to.
    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The public port.
    pub(crate) fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The admin port, if any.
    pub(crate) fn admin_port(&self) -> Option<u16> {
        self.admin
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// Serves `app` on the public listener until `shutdown` is cancelled
    /// (then [`Self::draining`] is set, new connections are refused and
    /// requests in progress finish), and the admin router of `health` on the
    /// admin listener, one of the tasks, until the public one has drained,
    /// so probes see the drain. Then stops and awaits the tasks.
    pub(crate) async fn serve(
        mut self,
        role: &'static str,
        app: Router,
        health: Health,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        if let Some(admin) = self.admin.take() {
            // A failure of the admin listener is logged by it; the role's
            // result is its public listener's, as before the split.
            let _admin = serve_admin(admin, admin_router(health), &self.tasks);
        }
        let draining = self.draining();
        self.serve_until(role, app, async move {
            shutdown.cancelled().await;
            draining.store(true, Ordering::Relaxed);
            tracing::info!(
                role,
                "draining: refusing new connections, finishing requests in progress"
            );
        })
        .await
    }

    /// Serves `app` on the public listener until `shutdown` completes and
    /// requests in progress have finished, then stops and awaits the tasks.
    /// An admin listener, if bound, is not served.
    pub(crate) async fn serve_until(
        self,
        role: &'static str,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let result = serve(self.listener, app, &self.stack, shutdown).await;
        if let Some(registration) = self.registration {
            registration.leave().await;
        }
        stop_tasks(role, &self.tasks).await;
        result
    }
}
