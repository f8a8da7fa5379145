//! Shared set-up: a private redis-server, a supervised handle, callers and
//! workers with short timeouts so recovery paths run in test time, and the
//! waits and raw entries the tests arrange and observe with.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use holdfast_core::{Keys, Reply, ReplyStatus, RequestId, Topic};
use holdfast_redis::RedisConfig;
use holdfast_streams::{
    Admin, CallError, CallOptions, Caller, CallerConfig, Handler, HandlerError, Request, Worker,
    WorkerConfig, WorkerStatus,
};
use holdfast_testkit::TestRedis;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for a dead letter or a job's status.
const PATIENCE: Duration = Duration::from_secs(5);

/// A private redis-server with a handle on the production settings, a key
/// prefix of the test's own and the topic the tests call. It reads as the
/// [`TestRedis`] it wraps: `env.server`, `env.redis`, `env.shutdown`.
pub struct TestEnv {
    local: TestRedis,
    pub keys: Keys,
    pub topic: Topic,
}

impl Deref for TestEnv {
    type Target = TestRedis;

    fn deref(&self) -> &TestRedis {
        &self.local
    }
}

impl DerefMut for TestEnv {
    fn deref_mut(&mut self) -> &mut TestRedis {
        &mut self.local
    }
}

pub async fn env() -> TestEnv {
    let local = TestRedis::connect(holdfast_testkit::redis().await, RedisConfig::new).await;
    TestEnv {
        keys: Keys::new(local.prefix.clone()),
        topic: Topic::parse("echo").unwrap(),
        local,
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
    pub fn spawn_worker<H: Handler>(&self, cfg: WorkerConfig, handler: H) -> RunningWorker {
        let stop = self.shutdown.child_token();
        let worker = Worker::new(self.redis.clone(), cfg, handler);
        let status = worker.status();
        let handle = tokio::spawn(worker.run(stop.clone()));
        (stop, status, handle)
    }

    /// Runs a worker with [`worker_config`](Self::worker_config) that
    /// echoes after `delay`; returns the echo, to count its runs, and the
    /// worker.
    pub fn spawn_echo_after(&self, delay: Duration) -> (Echo, RunningWorker) {
        let echo = Echo::new(delay);
        let worker = self.spawn_worker(self.worker_config(), echo.clone());
        (echo, worker)
    }

    /// Runs a worker that echoes at once until the test ends; returns the
    /// echo, to count its runs.
    pub fn spawn_echo(&self) -> Echo {
        self.spawn_echo_after(Duration::ZERO).0
    }

    /// The admin view of this test's topic (one partition).
    pub fn admin(&self) -> Admin {
        Admin::new(self.redis.clone(), self.keys.clone(), 1)
    }

    /// Sends a call with `body` on a task of its own, to be awaited later.
    pub fn spawn_call(
        &self,
        caller: &Caller,
        body: Bytes,
        options: CallOptions,
    ) -> JoinHandle<Result<Reply, CallError>> {
        let caller = caller.clone();
        let topic = self.topic.clone();
        tokio::spawn(async move { caller.call(&topic, body, options).await })
    }

    /// Calls the topic with `body` and checks that the reply is `ok`.
    pub async fn call_ok(&self, caller: &Caller, body: Bytes, options: CallOptions) -> Reply {
        let reply = caller
            .call(&self.topic, body, options)
            .await
            .expect("the call is answered");
        assert_eq!(reply.status, ReplyStatus::Ok);
        reply
    }

    /// Writes an entry with `fields` straight into the request stream, as
    /// someone with `redis-cli` might; returns its id.
    pub async fn add_raw_entry(&self, fields: &[(&str, &str)]) -> String {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.keys.request_stream(&self.topic, 0)).arg("*");
        for (field, value) in fields {
            cmd.arg(*field).arg(*value);
        }
        self.redis.cmd(&cmd).await.expect("XADD")
    }

    /// Waits until the topic holds `count` dead letters.
    pub async fn wait_for_dead_letters(&self, count: usize, what: &str) {
        let admin = self.admin();
        holdfast_testkit::wait_until(PATIENCE, what, || {
            let admin = admin.clone();
            let topic = self.topic.clone();
            async move { admin.dead_letters(&topic, 10).await.unwrap().len() == count }
        })
        .await;
    }

    /// Waits until the job `id` has the status `status`.
    pub async fn wait_for_job(&self, caller: &Caller, id: &RequestId, status: &str, what: &str) {
        holdfast_testkit::wait_until(PATIENCE, what, || {
            let caller = caller.clone();
            let topic = self.topic.clone();
            async move {
                caller
                    .job(&topic, id)
                    .await
                    .unwrap()
                    .is_some_and(|j| j.status == status)
            }
        })
        .await;
    }
}

/// A running worker: cancel its stop token and await its handle to drain
/// it; its status shows what it holds.
pub type RunningWorker = (CancellationToken, WorkerStatus, JoinHandle<()>);

/// Checks that every call of `calls` was answered `ok`.
pub async fn assert_all_ok(calls: impl IntoIterator<Item = JoinHandle<Result<Reply, CallError>>>) {
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status, ReplyStatus::Ok);
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
        let echo = self.clone();
        async move {
            echo.runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(echo.delay).await;
            Ok(req.envelope.body)
        }
    }
}
