#!/usr/bin/env python3
"""Helper of .ci/check-prometheus-live: rewrites the shipped Prometheus
configuration for a stack on loopback ports, then asks the running
Prometheus whether every target is up and every alert rule is loaded.

  prometheus_live.py config SRC ALERTS OUT PORTS_JSON INTERVAL
  prometheus_live.py wait-targets PROM_URL CONFIG TIMEOUT_S
  prometheus_live.py check-rules PROM_URL ALERTS TIMEOUT_S
  prometheus_live.py wait-ready TIMEOUT_S URL...

PORTS_JSON maps each Compose address of the scrape config ("ingress:5011",
and for DNS discovery "worker:5010") to a list of loopback ports.
"""

import json
import sys
import time
import urllib.error
import urllib.request

import yaml


def fail(message):
    print(f"check-prometheus-live: {message}", file=sys.stderr)
    sys.exit(1)


def local_targets(address, ports):
    if address not in ports:
        fail(
            f"deploy/prometheus/prometheus.yml scrapes {address}, which the live "
            "check does not start: add it to the port map of .ci/check-prometheus-live"
        )
    return [f"127.0.0.1:{port}" for port in ports[address]]


def rewrite(src, alerts, out, ports_json, interval):
    with open(src, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    ports = json.loads(ports_json)
    glob = config.setdefault("global", {})
    glob["scrape_interval"] = interval
    glob["evaluation_interval"] = interval
    glob["scrape_timeout"] = interval
    rule_files = config.get("rule_files") or []
    if rule_files != ["/etc/prometheus/alerts.yml"]:
        fail(f"rule_files is {rule_files}, not the one alerts.yml the check loads")
    config["rule_files"] = [alerts]
    seen = set()
    for job in config.get("scrape_configs") or []:
        name = job["job_name"]
        # The short interval everywhere, so targets turn up within seconds.
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
        statics = []
        for static in job.pop("static_configs", []) or []:
            targets = []
            for address in static.get("targets") or []:
                targets += local_targets(address, ports)
                seen.add(address)
            statics.append({**static, "targets": targets})
        # Compose scales the workers under one DNS name; here each has a port.
        for dns in job.pop("dns_sd_configs", []) or []:
            for host in dns.get("names") or []:
                address = f"{host}:{dns['port']}"
                seen.add(address)
                statics.append({"targets": local_targets(address, ports)})
        leftover = [key for key in job if key.endswith("_sd_configs")]
        if leftover:
            fail(f"job {name} uses {leftover}, which the live check cannot rewrite")
        if not statics:
            fail(f"job {name} has no target")
        job["static_configs"] = statics
    unused = sorted(set(ports) - seen)
    if unused:
        fail(f"the scrape config no longer names {unused}: update the port map")
    # No Alertmanager here; an empty list is what the shipped file has too.
    with open(out, "w", encoding="utf-8") as f:
        yaml.safe_dump(config, f, sort_keys=False)


def get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise ValueError(f"{url}: {body}")
    return body["data"]


def poll(what, timeout, probe):
    """Calls probe() until it returns (True, summary) or timeout passes."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        try:
            done, last = probe()
            if done:
                return last
        except (OSError, ValueError, urllib.error.URLError) as err:
            last = f"no answer: {err}"
        if time.monotonic() >= deadline:
            fail(f"{what} after {timeout} s:\n{last}")
        time.sleep(1)


def wait_targets(prom, config_path, timeout):
    with open(config_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    expected = {}
    for job in config["scrape_configs"]:
        count = sum(len(s["targets"]) for s in job["static_configs"])
        expected[job["job_name"]] = count

    def probe():
        active = get(f"{prom}/api/v1/targets?state=active")["activeTargets"]
        lines, done = [], True
        for job, count in expected.items():
            mine = [t for t in active if t["labels"].get("job") == job]
            up = [t for t in mine if t["health"] == "up"]
            if len(mine) != count or len(up) != count:
                done = False
            lines.append(f"  {job}: {len(up)}/{count} up")
            for t in mine:
                if t["health"] != "up":
                    lines.append(
                        f"    {t['scrapeUrl']}: {t['health']} {t.get('lastError', '')}".rstrip()
                    )
        return done, "\n".join(lines)

    summary = poll("not every target is up", timeout, probe)
    print(f"every target up ({sum(expected.values())} in {len(expected)} jobs):")
    print(summary)


def alert_names(alerts):
    with open(alerts, encoding="utf-8") as f:
        rules = yaml.safe_load(f)
    return sorted(
        rule["alert"]
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    )


def check_rules(prom, alerts, timeout):
    want = alert_names(alerts)
    if not want:
        fail(f"{alerts} has no alert rule")

    def probe():
        groups = get(f"{prom}/api/v1/rules?type=alert")["groups"]
        loaded = sorted(
            rule["name"] for group in groups for rule in group["rules"]
        )
        unhealthy = [
            f"{rule['name']}: {rule.get('lastError', '')}"
            for group in groups
            for rule in group["rules"]
            if rule.get("health") == "err"
        ]
        missing = sorted(set(want) - set(loaded))
        extra = sorted(set(loaded) - set(want))
        summary = (
            f"  {len(loaded)} loaded, {len(want)} in the file; "
            f"missing {missing or 'none'}, unexpected {extra or 'none'}, "
            f"failing {unhealthy or 'none'}"
        )
        return loaded == want and not unhealthy, summary

    summary = poll("the alert rules are not all loaded", timeout, probe)
    print(f"every alert rule of {alerts} loaded ({len(want)}):")
    print(summary)


def wait_ready(timeout, urls):
    def probe():
        waiting = []
        for url in urls:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status // 100 != 2:
                        waiting.append(f"  {url}: {response.status}")
            except (OSError, urllib.error.URLError) as err:
                waiting.append(f"  {url}: {err}")
        return not waiting, "\n".join(waiting)

    poll("the stack is not ready", timeout, probe)


def main(argv):
    if len(argv) < 2:
        fail(__doc__)
    command, args = argv[1], argv[2:]
    if command == "config" and len(args) == 5:
        rewrite(*args)
    elif command == "wait-targets" and len(args) == 3:
        wait_targets(args[0], args[1], float(args[2]))
    elif command == "check-rules" and len(args) == 3:
        check_rules(args[0], args[1], float(args[2]))
    elif command == "wait-ready" and len(args) >= 2:
        wait_ready(float(args[0]), args[1:])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv)
