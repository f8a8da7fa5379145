//! Shared set-up: a private redis-server, a supervised handle, callers and
//! workers with short timeouts so recovery paths run in test time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use holdfast_core::{Keys, Topic};
use holdfast_redis::{Redis, RedisConfig};
use holdfast_streams::{
    Caller, CallerConfig, Handler, HandlerError, Request, Worker, WorkerConfig, WorkerStatus,
};
use holdfast_testkit::LocalRedis;
use tokio_util::sync::CancellationToken;

pub struct TestEnv {
    pub server: LocalRedis,
    pub redis: Redis,
    pub shutdown: CancellationToken,
    pub keys: Keys,
    pub topic: Topic,
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn env() -> TestEnv {
    holdfast_testkit::init_tracing();
    let server = holdfast_testkit::redis().await;
    let shutdown = CancellationToken::new();
    let redis = Redis::start(RedisConfig::new(server.url()), shutdown.clone()).unwrap();
    assert!(
        redis.wait_ready(Duration::from_secs(5)).await,
        "redis not ready"
    );
    TestEnv {
        server,
        redis,
        shutdown,
        keys: Keys::new(format!("t{}", fastrand::u32(..))),
        topic: Topic::parse("echo").unwrap(),
    }
}

impl TestEnv {
    pub fn caller(&self) -> Caller {
        self.caller_with(|_| {})
    }

    pub fn caller_with(&self, f: impl FnOnce(&mut CallerConfig)) -> Caller {
        let mut cfg = CallerConfig::new(self.keys.clone());
        cfg.block = Duration::from_millis(500);
        f(&mut cfg);
        Caller::start(self.redis.clone(), cfg, self.shutdown.clone())
    }

    pub fn worker_config(&self) -> WorkerConfig {
        let mut cfg = WorkerConfig::new(self.keys.clone(), self.topic.clone());
        cfg.claim_timeout = Duration::from_millis(600);
        cfg.block = Duration::from_millis(200);
        cfg.trim_interval = Duration::from_millis(300);
        cfg
    }

    /// Runs a worker until the returned token is cancelled; the handle ends after its drain.
    pub fn spawn_worker<H: Handler>(
        &self,
        cfg: WorkerConfig,
        handler: H,
    ) -> (CancellationToken, WorkerStatus, tokio::task::JoinHandle<()>) {
        let stop = self.shutdown.child_token();
        let worker = Worker::new(self.redis.clone(), cfg, handler);
        let status = worker.status();
        let handle = tokio::spawn(worker.run(stop.clone()));
        (stop, status, handle)
    }
}

/// Echoes the body after `delay`, counting the runs.
#[derive(Clone)]
pub struct Echo {
    pub delay: Duration,
    pub runs: Arc<AtomicUsize>,
}

impl Echo {
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            runs: Arc::new(AtomicUsize::new(0)),
        }
    }
    pub fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

impl Handler for Echo {
    fn handle(
        &self,
        req: Request,
    ) -> impl Future<Output = Result<Bytes, HandlerError>> + Send + 'static {
        let delay = self.delay;
        let runs = self.runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok(req.envelope.body)
        }
    }
}
