//! The dashboard in a real browser: Debian's chromium driven through
//! chromedriver (WebDriver), against `holdfast up` with every role as its
//! own process.
//!
//! `./dev test` installs chromium and chromium-driver when they are missing
//! (as root). Without them these tests say so and pass, except under
//! `CI=true`, where a missing browser fails them.
//!
//! With `HOLDFAST_SCREENSHOTS=DIR` the walk-through also saves the README's
//! screenshots in DIR (`./dev screenshots` does that).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use holdfast_testkit::free_port;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::helpers::{dashboard_link, http_client, read_banner, spawn_up};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts chromedriver, or says why the browser tests cannot run.
    async fn start() -> Option<Driver> {
        if !std::path::Path::new(CHROMEDRIVER).exists() || !std::path::Path::new(CHROMIUM).exists()
        {
            let why = format!(
                "{CHROMEDRIVER} or {CHROMIUM} is missing (apt-get install chromium chromium-driver; ./dev test does it as root)"
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "browser tests cannot run: {why}"
            );
            eprintln!("skipping the browser tests: {why}");
            return None;
        }
        let port = free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let client = http_client();
        let give_up = Instant::now() + Duration::from_secs(20);
        while client.get(format!("{url}/status")).send().await.is_err() {
            assert!(
                Instant::now() < give_up,
                "chromedriver did not answer on {url}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(Driver { child, url })
    }

    /// A headless chromium at 1366×768 with no network of its own.
    async fn browser(&self) -> Client {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1366,768",
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Evaluates `script` (a function body that returns a value) in the page.
async fn eval(browser: &Client, script: &str) -> Value {
    browser
        .execute(script, Vec::new())
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
}

/// Polls `check` (a script that returns a value) until `accept` holds, for
/// at most `within`; the accepted value.
async fn until(
    browser: &Client,
    within: Duration,
    what: &str,
    script: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let give_up = Instant::now() + within;
    loop {
        let value = eval(browser, script).await;
        if accept(&value) {
            return value;
        }
        assert!(
            Instant::now() < give_up,
            "{what} did not happen within {within:?}; last seen: {value:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The overview's instance rows as `[role, health, redis]`.
const INSTANCE_ROWS: &str = r##"
    const table = document.querySelector("#live table");
    if (!table) return [];
    return [...table.querySelectorAll("tbody tr")].map((row) => {
      const cells = row.querySelectorAll("td");
      return [cells[0].innerText.trim(), cells[2].innerText.trim().split("\n")[0], cells[3].innerText.trim()];
    });
"##;

fn rows(value: &Value) -> Vec<(String, String, String)> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let cell = |i: usize| row[i].as_str().unwrap_or("").to_owned();
            (cell(0), cell(1), cell(2))
        })
        .collect()
}

use crate::helpers::UP_ROLES as ROLES;

/// Saves a screenshot when `HOLDFAST_SCREENSHOTS` names a directory.
async fn screenshot(browser: &Client, name: &str) {
    let Some(dir) = std::env::var_os("HOLDFAST_SCREENSHOTS") else {
        return;
    };
    let png = browser.screenshot().await.expect("a screenshot");
    let path = PathBuf::from(dir).join(name);
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    eprintln!("screenshot: {}", path.display());
}

/// Fills the loop test form on the loop tests page and starts it.
async fn start_loop_test(
    browser: &Client,
    dashboard: &str,
    target: &str,
    count: u64,
    concurrency: u64,
) {
    browser
        .goto(&format!("{dashboard}loop-tests"))
        .await
        .expect("loop tests page");
    let form = browser
        .find(Locator::Id("loop-form"))
        .await
        .expect("loop form");
    form.find(Locator::Css(&format!(
        "select[name=target] option[value={target}]"
    )))
    .await
    .expect("the target")
    .click()
    .await
    .expect("choose the target");
    for (name, value) in [("count", count), ("concurrency", concurrency)] {
        let field = form
            .find(Locator::Css(&format!("input[name={name}]")))
            .await
            .expect("a field");
        field.clear().await.expect("clear");
        field.send_keys(&value.to_string()).await.expect("type");
    }
    form.find(Locator::Css("button[type=submit]"))
        .await
        .expect("start")
        .click()
        .await
        .expect("start the loop test");
}

/// The dashboard's state, from its JSON API.
async fn state(dashboard: &str) -> Value {
    http_client()
        .get(format!("{dashboard}api/dashboard/state"))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("state JSON")
}

/// Loop test `id` once it has ended.
async fn loop_test_end(dashboard: &str, id: u64, within: Duration) -> Value {
    let client = http_client();
    let give_up = Instant::now() + within;
    loop {
        let run: Value = client
            .get(format!("{dashboard}api/dashboard/loop-tests/{id}"))
            .send()
            .await
            .expect("loop test")
            .json()
            .await
            .expect("loop test JSON");
        if run["state"] != "running" {
            return run;
        }
        assert!(
            Instant::now() < give_up,
            "loop test {id} still runs: {run:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_dashboard_in_a_browser_watches_and_breaks_the_stack() {
    let Some(driver) = Driver::start().await else {
        return;
    };
    let client = http_client();
    let mut up = spawn_up(&client).await;
    let mut stdout = up.stdout_lines();
    let banner = read_banner(&mut stdout).await;
    let link = dashboard_link(&banner);
    let dashboard = link.split_once('#').expect("a token fragment").0.to_owned();
    let redis_port: u16 = banner
        .iter()
        .find_map(|l| l.split("redis://127.0.0.1:").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no private redis in {banner:#?}"));
    let browser = driver.browser().await;

    // The overview shows every role ready.
    browser.goto(&link).await.expect("open the dashboard");
    until(
        &browser,
        Duration::from_secs(15),
        "every role shown ready",
        INSTANCE_ROWS,
        |v| {
            let rows = rows(v);
            rows.iter().map(|r| r.0.as_str()).eq(ROLES)
                && rows.iter().all(|r| r.1 == "ready" && r.2 == "ready")
        },
    )
    .await;
    assert_eq!(
        eval(&browser, "return location.hash").await,
        "",
        "the token leaves the address bar once read"
    );

    // Live values change over server-sent events, without a reload.
    eval(&browser, "window.notReloaded = true; return null").await;
    let uptime = "return document.querySelector('#live tbody tr td:nth-child(7)').innerText";
    let first = eval(&browser, uptime).await;
    until(
        &browser,
        Duration::from_secs(5),
        "the uptime to move on",
        uptime,
        |v| v != &first,
    )
    .await;
    until(
        &browser,
        Duration::from_secs(5),
        "a chart point",
        "return document.querySelectorAll('#charts svg').length",
        |v| v.as_u64() == Some(3),
    )
    .await;
    assert_eq!(
        eval(&browser, "return window.notReloaded === true").await,
        true
    );
    screenshot(&browser, "dashboard-overview.png").await;

    // A chaos request without the token is refused and changes nothing.
    let refused = browser
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               fetch("/api/dashboard/chaos/crash-redis", {method: "POST", headers: {"content-type": "application/json"}, body: "{}"})
                 .then(async (r) => done([r.status, r.headers.get("content-type"), (await r.json()).code]));"#,
            Vec::new(),
        )
        .await
        .expect("fetch without token");
    assert_eq!(
        refused,
        json!([401, "application/problem+json", "unauthorized"])
    );
    let after = state(&dashboard).await;
    assert!(after["stack"]["running"].is_null(), "{after:#}");
    assert!(
        after["stack"]["past"].as_array().is_some_and(Vec::is_empty),
        "{after:#}"
    );

    // Crash Redis for 3 s with the button: every role reconnects within
    // 2 s, the charts show the band, every role is ready again within 2 s
    // of Redis returning.
    let form = browser
        .find(Locator::Css("form[data-action=crash-redis]"))
        .await
        .expect("the crash-redis form");
    let down_for = form
        .find(Locator::Css("input[name=down_for_s]"))
        .await
        .expect("its field");
    down_for.clear().await.expect("clear");
    down_for.send_keys("3").await.expect("type");
    let pressed = Instant::now();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .expect("its button")
        .click()
        .await
        .expect("press Crash Redis");
    until(
        &browser,
        Duration::from_secs(2) + Duration::from_millis(1200),
        "every role's Redis down",
        INSTANCE_ROWS,
        |v| {
            let rows = rows(v);
            rows.len() == ROLES.len() && rows.iter().all(|r| r.2 != "ready")
        },
    )
    .await;
    let down_after = pressed.elapsed();
    until(
        &browser,
        Duration::from_secs(5),
        "the band on the chart",
        "return document.querySelector('#charts svg').textContent",
        |v| v.as_str().is_some_and(|t| t.contains("redis SIGKILL")),
    )
    .await;
    eval(&browser, "window.scrollTo(0, 0); return null").await;
    screenshot(&browser, "dashboard-redis-crash.png").await;
    // When Redis came back, by the stack's own event.
    let back_at = loop {
        let s = state(&dashboard).await;
        let back = s["stack"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| {
                e["what"]
                    .as_str()
                    .is_some_and(|w| w.contains("redis-server started again"))
                    .then(|| e["at_unix_ms"].as_u64().unwrap_or(0))
            });
        if let Some(at) = back {
            break at;
        }
        assert!(
            pressed.elapsed() < Duration::from_secs(15),
            "Redis did not come back: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Read fresh (not the page's once-a-second push) to time the recovery.
    let ready_at = loop {
        let s = state(&dashboard).await;
        let states: Vec<_> = s["instances"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| i["redis_state"].clone())
            .collect();
        if states.len() == ROLES.len() && states.iter().all(|st| st == "ready") {
            break s["read_at_unix_ms"].as_u64().unwrap_or(0);
        }
        assert!(
            pressed.elapsed() < Duration::from_secs(20),
            "roles not ready again: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let recovery_ms = ready_at.saturating_sub(back_at);
    eprintln!(
        "redis down seen after {down_after:?}; every role ready {recovery_ms} ms after redis returned"
    );
    assert!(
        recovery_ms <= 2_000,
        "every role ready {recovery_ms} ms after Redis returned"
    );

    // Kill a worker while a loop test of weather calls runs: the worker is
    // shown down, `up` starts it again, and no call is lost.
    start_loop_test(&browser, &dashboard, "weather", 600, 6).await;
    let weather_run = until(&browser, Duration::from_secs(5), "the loop test to run", "return document.getElementById('current').hidden ? null : document.getElementById('current-bar').value", |v| v.as_f64().is_some_and(|n| n > 0.0)).await;
    eprintln!("weather loop test under way: {weather_run}");
    browser.goto(&dashboard).await.expect("overview");
    let kill = browser
        .find(Locator::Css("form[data-action=kill-worker]"))
        .await
        .expect("kill form");
    kill.find(Locator::Css("input[name=worker]"))
        .await
        .expect("worker field")
        .send_keys("1")
        .await
        .expect("type");
    kill.find(Locator::Css("button[type=submit]"))
        .await
        .expect("kill button")
        .click()
        .await
        .expect("kill worker 1");
    let processes = r##"return [...document.querySelectorAll("#stack table tbody tr")].map((r) => r.innerText.split("\t").map((c) => c.trim()));"##;
    until(
        &browser,
        Duration::from_secs(5),
        "worker-1 shown down or restarted",
        processes,
        |v| {
            v.as_array()
                .into_iter()
                .flatten()
                .any(|r| r[0] == "worker-1" && (r[1] == "down" || r[3] == "1"))
        },
    )
    .await;
    until(
        &browser,
        Duration::from_secs(15),
        "worker-1 running again after one restart",
        processes,
        |v| {
            v.as_array()
                .into_iter()
                .flatten()
                .any(|r| r[0] == "worker-1" && r[1] == "running" && r[3] == "1")
        },
    )
    .await;
    let runs: Value = client
        .get(format!("{dashboard}api/dashboard/loop-tests"))
        .send()
        .await
        .expect("runs")
        .json()
        .await
        .expect("runs JSON");
    let id = runs[0]["id"].as_u64().expect("the weather run's id");
    let run = loop_test_end(&dashboard, id, Duration::from_secs(60)).await;
    assert_eq!(
        (
            run["state"].as_str(),
            run["ok"].as_u64(),
            run["errors"].as_u64()
        ),
        (Some("finished"), Some(600), Some(0)),
        "{run:#}"
    );

    // A loop test of 10,000 product reads shows its progress and ends with
    // 10,000 ok.
    start_loop_test(&browser, &dashboard, "product", 10_000, 8).await;
    until(
        &browser,
        Duration::from_secs(10),
        "progress between start and end",
        "const bar = document.getElementById('current-bar'); return [bar.value, bar.max];",
        |v| {
            let (value, max) = (v[0].as_f64().unwrap_or(0.0), v[1].as_f64().unwrap_or(0.0));
            max == 10_000.0 && value > 0.0
        },
    )
    .await;
    let done = until(
        &browser,
        Duration::from_secs(60),
        "the loop test's end",
        "return document.getElementById('loop-result').innerText",
        |v| v.as_str().is_some_and(|t| t.contains("finished")),
    )
    .await;
    assert!(
        done.as_str()
            .is_some_and(|t| t.contains("10000 ok, 0 errors")),
        "{done}"
    );

    // A dead letter written by hand is listed, inspected and replayed.
    let mut redis = holdfast_redis::redis::Client::open(format!("redis://127.0.0.1:{redis_port}/"))
        .expect("redis client")
        .get_multiplexed_async_connection()
        .await
        .expect("redis connection");
    let _: String = holdfast_redis::redis::cmd("XADD")
        .arg(crate::helpers::WEATHER_REQUEST_STREAM)
        .arg("*")
        .arg("written")
        .arg("by hand")
        .query_async(&mut redis)
        .await
        .expect("XADD");
    browser
        .goto(&format!("{dashboard}streams"))
        .await
        .expect("streams page");
    let written = Instant::now();
    let letter = loop {
        if let Ok(link) = browser
            .find(Locator::Css("a[href*='/dead-letters/']"))
            .await
        {
            break link;
        }
        assert!(
            written.elapsed() < Duration::from_secs(15),
            "the dead letter was never listed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        browser.refresh().await.expect("reload");
    };
    letter.click().await.expect("inspect the dead letter");
    let fields = browser
        .find(Locator::Css("table tbody"))
        .await
        .expect("its fields")
        .text()
        .await
        .expect("text");
    assert!(
        fields.contains("written") && fields.contains("by hand"),
        "{fields}"
    );
    browser
        .find(Locator::Id("replay"))
        .await
        .expect("replay button")
        .click()
        .await
        .expect("replay");
    until(
        &browser,
        Duration::from_secs(5),
        "the replay",
        "return document.getElementById('letter-result').innerText",
        |v| v.as_str() == Some("replayed 1 dead letter(s)"),
    )
    .await;

    browser.close().await.expect("close the browser");
    up.signal(nix::sys::signal::Signal::SIGINT);
    let exit = up.exit_status(Duration::from_secs(20)).await;
    assert!(exit.success(), "`holdfast up` exited with {exit}");
}
