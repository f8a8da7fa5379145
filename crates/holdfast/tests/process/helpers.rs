//! Shared set-up: the real `holdfast` binary run as child processes, each
//! test with its own redis-server and free ports, so tests can kill and
//! signal them like an orchestrator would.
//!
//! Children log JSON to stderr. Their lines are kept in memory and printed
//! only when a test panics (the harness then shows them next to the
//! failure), or live when `TEST_LOG` is set; otherwise tests are silent.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use holdfast_testkit::{LocalRedis, free_port};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How long a freshly started role may take to report ready.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a role is started on newly picked ports. Tests running
/// in parallel pick free ports at the same moment, so a port can be taken
/// between `free_port` and the child binding it; the child then exits.
const START_ATTEMPTS: usize = 3;

/// The request stream of the default topic's only partition.
pub const WEATHER_REQUEST_STREAM: &str = "hf:{weather:0}:req";

/// An HTTP client for talking to children on loopback: no proxy from the
/// environment, and a bound on every request so a hung child fails the
/// test instead of hanging it.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

/// A `holdfast` command with JSON logs and none of the caller's
/// `HOLDFAST_*` or `REDIS_*` settings, so only the flags a test passes count.
pub fn holdfast_command(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_holdfast"));
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("HOLDFAST_") || name.starts_with("REDIS_") {
            command.env_remove(name.as_ref());
        }
    }
    command
        .args(args)
        .env("HOLDFAST_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so that dropping the process also kills
        // what it started (the private redis-server of `holdfast up`).
        .process_group(0)
        .kill_on_drop(true);
    command
}

/// One running `holdfast` process. Dropping it kills the process and its
/// process group (a SIGKILL cannot be passed on, so children it started
/// would outlive it) and, when the test is failing, prints what it logged.
pub struct Process {
    name: String,
    child: Child,
    /// Taken at spawn: `Child::id` is gone once the child is reaped, but
    /// what it started may still run in its group.
    process_group: Pid,
    logs: Arc<Mutex<Vec<String>>>,
    /// The task copying stderr into `logs`; it ends at EOF, when the
    /// process has exited.
    log_reader: Option<JoinHandle<()>>,
    /// Port of the admin listener (`/health*`).
    pub admin_port: u16,
    /// Port of the public listener; `None` for roles without one.
    pub port: Option<u16>,
}

impl Process {
    /// Spawns `command` (whose stderr must be piped) and starts collecting
    /// its log lines.
    pub fn spawn(name: &str, mut command: Command, admin_port: u16, port: Option<u16>) -> Self {
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {name}: {e}"));
        let pid = child.id().expect("a child just spawned has a pid");
        let process_group = Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let sink = logs.clone();
        let live = std::env::var_os("TEST_LOG").is_some();
        let prefix = name.to_owned();
        // Drains the pipe so the child never blocks on a full one.
        let log_reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if live {
                    eprintln!("[{prefix}] {line}");
                }
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
        });
        Self {
            name: name.to_owned(),
            child,
            process_group,
            logs,
            log_reader: Some(log_reader),
            admin_port,
            port,
        }
    }

    /// The child's pid as a number, while it runs.
    pub fn pid_u32(&self) -> u32 {
        self.child
            .id()
            .unwrap_or_else(|| panic!("{} has already exited", self.name))
    }

    /// The child's pid, while it runs.
    fn pid(&self) -> Pid {
        let pid = self
            .child
            .id()
            .unwrap_or_else(|| panic!("{} has already exited", self.name));
        Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"))
    }

    /// Sends `signal` (SIGTERM, SIGINT) to the process.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal)
            .unwrap_or_else(|e| panic!("could not send {signal} to {}: {e}", self.name));
    }

    /// SIGKILL, like a crash or the OOM killer: nothing runs in the child
    /// afterwards. Waits until it is gone.
    pub async fn kill9(&mut self) {
        self.child
            .start_kill()
            .unwrap_or_else(|e| panic!("could not kill {}: {e}", self.name));
        let _ = self.child.wait().await;
    }

    /// Waits for the process to exit; panics if it still runs after `within`.
    pub async fn exit_status(&mut self, within: Duration) -> ExitStatus {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.unwrap_or_else(|e| panic!("waiting for {}: {e}", self.name)),
            Err(_) => panic!(
                "{} still runs {within:?} after being asked to stop",
                self.name
            ),
        }
    }

    /// The process's standard output, line by line; panics unless the
    /// command piped it.
    pub fn stdout_lines(&mut self) -> Lines<BufReader<ChildStdout>> {
        let stdout = self.child.stdout.take().expect("stdout is piped");
        BufReader::new(stdout).lines()
    }

    /// `GET /health` on the admin listener.
    pub async fn health(&self, client: &reqwest::Client) -> Value {
        let url = format!("http://127.0.0.1:{}/health", self.admin_port);
        client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} /health: {e}", self.name))
            .json()
            .await
            .unwrap_or_else(|e| panic!("{} /health is not JSON: {e}", self.name))
    }

    /// Polls `/health` until `condition` holds for its JSON.
    pub async fn wait_for_health(
        &self,
        client: &reqwest::Client,
        what: &str,
        condition: impl Fn(&Value) -> bool,
    ) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let health = self.health(client).await;
            if condition(&health) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never reported {what}; last /health: {health}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `/health` until the worker reports `count` requests in
    /// progress (that many active terminals).
    pub async fn wait_until_holding(&self, client: &reqwest::Client, count: usize) {
        let what = format!("{count} requests in progress");
        self.wait_for_health(client, &what, |h| h["terminals"]["active"] == count)
            .await;
    }

    /// Polls `/health/ready` until it answers 200; the exit status if the
    /// process exits first (a port taken, a bad flag).
    async fn wait_ready(&mut self, client: &reqwest::Client) -> Result<(), ExitStatus> {
        let url = format!("http://127.0.0.1:{}/health/ready", self.admin_port);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(status);
            }
            if let Ok(response) = client.get(&url).send().await
                && response.status() == StatusCode::OK
            {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "{} was not ready within {STARTUP_TIMEOUT:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Whether the process, which has exited, failed to bind an address.
    async fn lost_a_port_race(&mut self) -> bool {
        if let Some(reader) = self.log_reader.take() {
            // The last lines may still be in the pipe.
            let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
        }
        let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.iter()
            .any(|line| line.contains("Address already in use"))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // ESRCH when everything in the group has exited already.
        let _ = killpg(self.process_group, Signal::SIGKILL);
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            let logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
            eprintln!("----- {} logged -----", self.name);
            for line in logs.iter() {
                eprintln!("{line}");
            }
        }
    }
}

/// Spawns what `spawn` returns until it reports ready, on new ports when
/// the ones picked were taken meanwhile.
pub async fn start_until_ready(client: &reqwest::Client, spawn: impl Fn() -> Process) -> Process {
    for attempt in 1..=START_ATTEMPTS {
        let mut process = spawn();
        match process.wait_ready(client).await {
            Ok(()) => return process,
            Err(_) if attempt < START_ATTEMPTS && process.lost_a_port_race().await => {}
            Err(status) => panic!("{} exited with {status} before it was ready", process.name),
        }
    }
    unreachable!("the last attempt returns or panics")
}

/// Starts `holdfast worker` against `redis` as consumer `consumer_name`,
/// with `extra` flags, and waits until it is ready.
pub async fn spawn_worker(
    client: &reqwest::Client,
    redis: &LocalRedis,
    consumer_name: &str,
    extra: &[&str],
) -> Process {
    let redis_url = redis.url();
    start_until_ready(client, || {
        let admin_port = free_port();
        let admin = format!("127.0.0.1:{admin_port}");
        let mut args = vec![
            "worker",
            "--redis-url",
            &redis_url,
            "--admin-listen",
            &admin,
            "--consumer-name",
            consumer_name,
        ];
        args.extend_from_slice(extra);
        Process::spawn(consumer_name, holdfast_command(&args), admin_port, None)
    })
    .await
}

/// Starts `holdfast ingress` against `redis` and waits until it is ready.
pub async fn spawn_ingress(client: &reqwest::Client, redis: &LocalRedis) -> Process {
    spawn_ingress_with(client, redis, &[]).await
}

/// [`spawn_ingress`] with `extra` flags.
pub async fn spawn_ingress_with(
    client: &reqwest::Client,
    redis: &LocalRedis,
    extra: &[&str],
) -> Process {
    let redis_url = redis.url();
    start_until_ready(client, || {
        let (port, admin_port) = (free_port(), free_port());
        let listen = format!("127.0.0.1:{port}");
        let admin = format!("127.0.0.1:{admin_port}");
        let mut args = vec![
            "ingress",
            "--redis-url",
            &redis_url,
            "--listen",
            &listen,
            "--admin-listen",
            &admin,
        ];
        args.extend_from_slice(extra);
        Process::spawn("ingress", holdfast_command(&args), admin_port, Some(port))
    })
    .await
}

/// Starts `holdfast ROLE --redis-url URL` with `args` on fresh ports and
/// waits until it is ready: a worker gets an admin listener, the ingress
/// and the api a public and an admin one, the exporter and the dashboard
/// their one listener; the roles with a metrics sink flush every 200 ms.
pub async fn spawn_role(
    client: &reqwest::Client,
    role: &'static str,
    url: &str,
    args: &[&str],
) -> Process {
    start_until_ready(client, || {
        let (port, admin_port) = (free_port(), free_port());
        let listen = format!("127.0.0.1:{port}");
        let admin = format!("127.0.0.1:{admin_port}");
        let mut all = vec![role, "--redis-url", url];
        let (health_port, public) = match role {
            "worker" => {
                all.extend([
                    "--admin-listen",
                    &admin,
                    "--metrics-flush-interval",
                    "200ms",
                ]);
                (admin_port, None)
            }
            "exporter" | "dashboard" => {
                all.extend(["--listen", &listen]);
                (port, Some(port))
            }
            _ => {
                all.extend(["--listen", &listen, "--admin-listen", &admin]);
                all.extend(["--metrics-flush-interval", "200ms"]);
                (admin_port, Some(port))
            }
        };
        all.extend_from_slice(args);
        Process::spawn(role, holdfast_command(&all), health_port, public)
    })
    .await
}

/// A redis-server of the test's own with `holdfast ingress` on it, and the
/// client the test reaches them with: where the tests of workers that die
/// or drain begin.
pub struct IngressOnRedis {
    // Fields drop in this order: the ingress is killed before its Redis.
    pub ingress: Process,
    pub redis: LocalRedis,
    pub client: reqwest::Client,
}

impl IngressOnRedis {
    /// Starts a redis-server and an ingress on it, and waits until the
    /// ingress is ready.
    pub async fn start() -> Self {
        let client = http_client();
        let redis = holdfast_testkit::redis().await;
        let ingress = spawn_ingress(&client, &redis).await;
        IngressOnRedis {
            ingress,
            redis,
            client,
        }
    }

    /// Starts a worker on this Redis (see [`spawn_worker`]).
    pub async fn spawn_worker(&self, consumer_name: &str, extra: &[&str]) -> Process {
        spawn_worker(&self.client, &self.redis, consumer_name, extra).await
    }

    /// Sends one forecast request per city to the ingress, all at once
    /// (see [`send_forecasts`]).
    pub fn send_forecasts(&self, cities: &[&str], timeout_ms: u64) -> Vec<JoinHandle<Answer>> {
        let port = self.ingress.port.expect("ingress port");
        send_forecasts(&self.client, port, cities, timeout_ms)
    }
}

/// The roles of `holdfast up`'s registry entries, in the dashboard's order.
pub const UP_ROLES: [&str; 6] = [
    "api",
    "dashboard",
    "exporter",
    "ingress",
    "worker",
    "worker",
];

/// `holdfast up` on free ports with its stdout piped: the command, its
/// ingress admin port and its ingress port.
pub fn up_command() -> (Command, u16, u16) {
    let (port, admin_port) = (free_port(), free_port());
    let on = |port: u16| format!("127.0.0.1:{port}");
    let mut command = holdfast_command(&[
        "up",
        "--listen",
        &on(port),
        "--admin-listen",
        &on(admin_port),
        "--worker-admin-listen",
        "127.0.0.1:0",
        "--api-listen",
        &on(free_port()),
        "--api-admin-listen",
        &on(free_port()),
        "--exporter-listen",
        &on(free_port()),
        "--dashboard-listen",
        &on(free_port()),
    ]);
    command.stdout(Stdio::piped());
    (command, admin_port, port)
}

/// Starts `holdfast up` with no `REDIS_URL` (so it runs a private
/// redis-server) on free ports, its stdout piped, and waits until its
/// ingress is ready.
pub async fn spawn_up(client: &reqwest::Client) -> Process {
    spawn_up_with(client, &[]).await
}

/// [`spawn_up`] with `extra` flags.
pub async fn spawn_up_with(client: &reqwest::Client, extra: &[&str]) -> Process {
    start_until_ready(client, || {
        let (mut command, admin_port, port) = up_command();
        command.args(extra);
        Process::spawn("up", command, admin_port, Some(port))
    })
    .await
}

/// Reads `up`'s stdout until its banner ends; the banner's lines.
pub async fn read_banner(stdout: &mut Lines<BufReader<ChildStdout>>) -> Vec<String> {
    let mut transcript = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(line) = stdout.next_line().await.expect("read stdout") {
            let banner_done = line.contains("Press Ctrl-C");
            transcript.push(line);
            if banner_done {
                return;
            }
        }
        panic!("stdout ended before the banner: {transcript:#?}");
    })
    .await
    .expect("`holdfast up` printed no \"Press Ctrl-C\"");
    transcript
}

/// The dashboard link of `up`'s banner (`http://…/#token=…`).
pub fn dashboard_link(banner: &[String]) -> String {
    banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("dashboard").map(str::trim))
        .unwrap_or_else(|| panic!("no dashboard line in {banner:#?}"))
        .to_owned()
}

/// `POST /WeatherForecast/city` with a deadline of `timeout_ms`.
pub async fn post_forecast(
    client: &reqwest::Client,
    port: u16,
    city: &str,
    timeout_ms: u64,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("http://127.0.0.1:{port}/WeatherForecast/city"))
        .header("x-timeout-ms", timeout_ms.to_string())
        .json(&json!({"city": city, "location": "Downtown"}))
        .send()
        .await
}

/// What one forecast request got, and how long it took.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub elapsed: Duration,
}

/// Sends one forecast request per city, all at once, each in a task of
/// its own so that they are in flight while the test goes on.
pub fn send_forecasts(
    client: &reqwest::Client,
    port: u16,
    cities: &[&str],
    timeout_ms: u64,
) -> Vec<JoinHandle<Answer>> {
    cities
        .iter()
        .map(|city| {
            let client = client.clone();
            let city = (*city).to_owned();
            tokio::spawn(async move {
                let started = Instant::now();
                let response = post_forecast(&client, port, &city, timeout_ms)
                    .await
                    .unwrap_or_else(|e| panic!("forecast for {city} failed: {e}"));
                let status = response.status();
                let body = response.json().await.unwrap_or(Value::Null);
                Answer {
                    status,
                    body,
                    elapsed: started.elapsed(),
                }
            })
        })
        .collect()
}

/// Waits for every request sent by [`send_forecasts`].
pub async fn answers(requests: Vec<JoinHandle<Answer>>) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        answers.push(request.await.expect("request task panicked"));
    }
    answers
}

/// Entries of the weather request stream delivered but not acknowledged.
pub async fn pending_requests(redis: &LocalRedis) -> usize {
    use holdfast_redis::redis;
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the test redis");
    redis::cmd("XPENDING")
        .arg(WEATHER_REQUEST_STREAM)
        .arg("workers")
        .query_async::<redis::streams::StreamPendingReply>(&mut connection)
        .await
        .expect("XPENDING")
        .count()
}
