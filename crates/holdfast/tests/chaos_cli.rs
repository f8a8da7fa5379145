//! `holdfast chaos` as a user types it: the list of scenarios, their TOML,
//! and clear refusals of scenarios that cannot run. The scenarios
//! themselves run in `./dev chaos` (and so in CI), each in its short form.

use std::process::Command;

fn holdfast(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_holdfast"))
        .args(args)
        .output()
        .expect("run holdfast")
}

#[test]
fn every_built_in_scenario_is_listed_and_its_toml_can_be_shown() {
    let out = holdfast(&["chaos", "list"]);
    assert!(out.status.success());
    let list = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for expected in [
        "redis-crash",
        "redis-restart",
        "redis-auth-failure",
        "network-blackhole",
        "slow-redis",
        "worker-kill",
        "sentinel-failover",
        "cluster-primary-kill",
        "db-down",
        "soak",
        "overload",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {list}");
        let shown = holdfast(&["chaos", "show", expected]);
        assert!(shown.status.success());
        let toml = String::from_utf8(shown.stdout).unwrap();
        assert!(toml.contains(&format!("name = \"{expected}\"")), "{toml}");
    }
}

#[test]
fn an_edited_copy_with_a_mistake_is_refused_with_the_reason_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    let shown = holdfast(&["chaos", "show", "redis-crash"]);
    let toml = String::from_utf8(shown.stdout)
        .unwrap()
        .replace("short_for = \"4s\"", "short_for = \"40s\"");
    std::fs::write(&file, toml).unwrap();
    let out = holdfast(&["chaos", "run", file.to_str().unwrap(), "--short"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("after the load"), "{stderr}");

    let out = holdfast(&["chaos", "run", "no-such-scenario"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("redis-crash"),
        "the error lists the built-in names: {stderr}"
    );
}
