#!/usr/bin/env python3
"""The Kubernetes manifests against the holdfast binary they run.

    .ci/k8s_contract.py [--bin PATH] [--adapter-rules FILE] NAME=RENDERED.yaml...

Each RENDERED.yaml is the output of `kubectl kustomize` for one overlay
(.ci/check-k8s builds them). For every container that runs the holdfast
image, it checks without a cluster:

- every environment variable it gets (directly, or from a ConfigMap or a
  Secret through envFrom or valueFrom) is one that `holdfast ROLE --help`
  names as `[env: …]`, or one of the few the binary reads besides
  (EXTRA_ENV); the ConfigMaps, Secrets and keys it names exist; no service
  link variable of the namespace's Services lands on a name holdfast reads;
- its listeners (HOLDFAST_LISTEN and HOLDFAST_ADMIN_LISTEN, else the
  defaults of --help) bind every interface and are its containerPorts;
- its probes are httpGet on a declared containerPort that is the role's
  admin listener (its only one for the exporter and the dashboard):
  liveness on /health/live, readiness on /health/ready;
- the grace period outlasts the worker's drain (and the preStop pause);
- the security context: non-root 65532, read-only root, no privilege
  escalation, no capabilities, RuntimeDefault seccomp, /tmp writable;
- every Service selects a workload and its targetPorts are containerPorts;
  the Ingress backends, autoscaler targets, disruption budgets and network
  policies name what exists; the worker autoscaler's External metric is
  one the Prometheus adapter rules serve.

Then it REALLY starts every role of every overlay with the manifest's
environment, on this machine: REDIS_URL points at a private redis-server it
starts, listeners move to free loopback ports, DATABASE_URL to an SQLite
file in a temporary directory, and what names another host (CA files,
OTLP endpoint, control URL) is dropped. Each probe path must answer 200 on
the port it maps to within BOOT_SECONDS, and each process must exit on
SIGTERM within its grace period. Every process it starts is stopped, on
failure too.

The binary: --bin, else $HOLDFAST_BIN, else target/debug/holdfast.
"""

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

ROLES = ("ingress", "worker", "api", "exporter", "dashboard")

# Read by the binary without being a flag (tracing, OpenTelemetry, the
# instance name, `holdfast probe`), for every role; and per role, settings
# the --help of an older build may not show yet.
EXTRA_ENV = {
    "RUST_LOG",
    "HOLDFAST_LOG_FORMAT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "HOSTNAME",
    "HOLDFAST_PROBE_URL",
    "HOLDFAST_ADVERTISE_HOST",
}
EXTRA_ENV_BY_ROLE = {"api": {"HOLDFAST_USERS_BASE_URL"}}

# Dropped when the role runs here: they name files or hosts of the cluster.
HOST_SPECIFIC = {
    "REDIS_HOST",
    "REDIS_PORT",
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_DB",
    "REDIS_TLS",
    "REDIS_CA_FILE",
    "REDIS_CLIENT_CERT",
    "REDIS_CLIENT_KEY",
    "REDIS_TLS_INSECURE",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "HOLDFAST_USERS_BASE_URL",
    "HOLDFAST_CONTROL_URL",
}

BOOT_SECONDS = 40
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")


class Report:
    def __init__(self):
        self.passed = 0
        self.failures = []

    def ok(self, _what):
        self.passed += 1

    def fail(self, what):
        self.failures.append(what)
        print(f"FAIL {what}", flush=True)

    def check(self, cond, what):
        if cond:
            self.ok(what)
        else:
            self.fail(what)
        return cond


# --- the binary ------------------------------------------------------------


class RoleHelp:
    """What `holdfast ROLE --help` says: env names and option defaults."""

    def __init__(self, binary, role):
        out = subprocess.run(
            [binary, role, "--help"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        self.env = set(re.findall(r"\[env: ([A-Z][A-Z0-9_]*)", out))
        self.env |= EXTRA_ENV | EXTRA_ENV_BY_ROLE.get(role, set())
        # option long name -> (env name, default)
        self.options = {}
        for block in re.split(r"\n(?=\s+(?:-\w, )?--)", out):
            m = re.match(r"\s+(?:-\w, )?--([a-z0-9-]+)", block)
            if not m:
                continue
            env = re.search(r"\[env: ([A-Z][A-Z0-9_]*)", block)
            default = re.search(r"\[default: ([^\]]+)\]", block)
            self.options[m.group(1)] = (
                env.group(1) if env else None,
                default.group(1) if default else None,
            )
        if not self.env - EXTRA_ENV:
            raise SystemExit(f"`{binary} {role} --help` names no [env: …]: is it holdfast?")

    def listener(self, option, env):
        """(address, where) of --listen / --admin-listen, or None."""
        if option not in self.options:
            return None
        env_name, default = self.options[option]
        if env_name and env_name in env and env[env_name].value is not None:
            return env[env_name].value, env_name
        return default, f"the default of --{option}"

    def setting(self, option, env):
        env_name, default = self.options.get(option, (None, None))
        if env_name and env_name in env and env[env_name].value is not None:
            return env[env_name].value
        return default


def seconds(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(text))
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


def port_of(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


# --- the manifests ---------------------------------------------------------


class Value:
    def __init__(self, value, source):
        self.value = value
        self.source = source


class Rendered:
    def __init__(self, name, path):
        self.name = name
        with open(path) as f:
            self.objects = [o for o in yaml.safe_load_all(f) if o]

    def of_kind(self, *kinds):
        return [o for o in self.objects if o.get("kind") in kinds]

    def find(self, kind, name, namespace):
        for o in self.objects:
            md = o.get("metadata", {})
            if o.get("kind") == kind and md.get("name") == name and md.get("namespace") == namespace:
                return o
        return None

    def data_of(self, kind, name, namespace):
        o = self.find(kind, name, namespace)
        if o is None:
            return None
        data = dict(o.get("data") or {})
        if kind == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in data.items()}
            data.update(o.get("stringData") or {})
        return data


def ns(obj):
    return obj.get("metadata", {}).get("namespace")


def selects(selector, labels):
    """A label selector (matchLabels/matchExpressions or a plain map)."""
    if selector is None:
        return False
    if "matchLabels" in selector or "matchExpressions" in selector:
        match, expressions = selector.get("matchLabels") or {}, selector.get("matchExpressions") or []
    else:
        match, expressions = selector, []
    for k, v in match.items():
        if labels.get(k) != v:
            return False
    for e in expressions:
        op, key, values = e["operator"], e["key"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def is_holdfast(container):
    image = container.get("image", "").split("@")[0]
    repo = image.rsplit("/", 1)[-1].split(":")[0]
    return repo == "holdfast"


def service_link_names(services):
    """The variables the kubelet adds for each Service when service links are on."""
    names = set()
    for svc in services:
        p = svc["metadata"]["name"].upper().replace("-", "_")
        names |= {f"{p}_SERVICE_HOST", f"{p}_SERVICE_PORT", f"{p}_PORT"}
        for port in svc.get("spec", {}).get("ports", []):
            proto = port.get("protocol", "TCP")
            base = f"{p}_PORT_{port['port']}_{proto}"
            names |= {base, f"{base}_PROTO", f"{base}_PORT", f"{base}_ADDR"}
            if port.get("name"):
                names.add(f"{p}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}")
    return names


def service_link_values(services):
    values = {}
    for svc in services:
        p = svc["metadata"]["name"].upper().replace("-", "_")
        ports = svc.get("spec", {}).get("ports", [])
        if not ports:
            continue
        ip = "10.96.0.10"
        values[f"{p}_SERVICE_HOST"] = ip
        values[f"{p}_SERVICE_PORT"] = str(ports[0]["port"])
        values[f"{p}_PORT"] = f"tcp://{ip}:{ports[0]['port']}"
        for port in ports:
            if port.get("name"):
                values[f"{p}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
    return values


class Container:
    """One holdfast container of one workload, with what it resolves to."""

    def __init__(self, rendered, workload, container, report):
        self.rendered = rendered
        self.workload = workload
        self.c = container
        self.pod = workload["spec"]["template"]["spec"]
        self.where = f"[{rendered.name}] {workload['kind']}/{workload['metadata']['name']} container {container['name']}"
        self.namespace = ns(workload)
        self.pod_name = f"{workload['metadata']['name']}-0"
        args = (container.get("command") or []) + (container.get("args") or [])
        args = [a for a in args if not a.endswith("holdfast")]
        self.role = args[0] if args else None
        self.env = self.resolve_env(report)

    def resolve_env(self, report):
        env = {}
        for src in self.c.get("envFrom", []):
            prefix = src.get("prefix", "")
            for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if key not in src:
                    continue
                ref = src[key]
                data = self.rendered.data_of(kind, ref["name"], self.namespace)
                if data is None:
                    report.check(ref.get("optional", False), f"{self.where}: envFrom names {kind} {ref['name']}, which the build lacks")
                    continue
                for k, v in data.items():
                    env[prefix + k] = Value(v, f"{kind} {ref['name']}")
        for e in self.c.get("env", []):
            name = e["name"]
            if "value" in e or "valueFrom" not in e:
                env[name] = Value(str(e.get("value", "")), "env")
                continue
            vf = e["valueFrom"]
            for kind, key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if key in vf:
                    ref = vf[key]
                    data = self.rendered.data_of(kind, ref["name"], self.namespace)
                    present = data is not None and ref["key"] in data
                    report.check(present or ref.get("optional", False), f"{self.where}: {name} from {kind} {ref['name']} key {ref['key']}, which the build lacks")
                    env[name] = Value(data.get(ref["key"]) if present else None, f"{kind} {ref['name']}")
            if "fieldRef" in vf:
                path = vf["fieldRef"]["fieldPath"]
                fake = {"metadata.name": self.pod_name, "metadata.namespace": self.namespace or "default", "status.podIP": "127.0.0.1", "spec.nodeName": "node-0"}
                env[name] = Value(fake.get(path, ""), f"fieldRef {path}")
            if "resourceFieldRef" in vf:
                env[name] = Value("1", "resourceFieldRef")
        return env

    def ports(self):
        return {p.get("name"): p["containerPort"] for p in self.c.get("ports", [])}

    def port_numbers(self):
        return {p["containerPort"] for p in self.c.get("ports", [])}

    def resolve_port(self, port):
        if isinstance(port, int):
            return port if port in self.port_numbers() else None
        return self.ports().get(port)


def check_container(ct, helps, services, report):
    where = ct.where
    if not report.check(ct.role in ROLES, f"{where}: runs a role ({ct.role!r} is none of {', '.join(ROLES)})"):
        return None
    role = ct.role
    h = helps[role]

    # Environment: names holdfast reads.
    for name, v in sorted(ct.env.items()):
        report.check(name in h.env, f"{where}: {name} (from {v.source}) is no variable `holdfast {role}` reads: misspelt?")
    has_redis = any(k in ct.env for k in ("REDIS_URL", "REDIS_HOST"))
    disabled = ct.env.get("REDIS_ENABLED") and ct.env["REDIS_ENABLED"].value == "false"
    report.check(has_redis or disabled, f"{where}: gets REDIS_URL (or REDIS_HOST)")
    if role == "api":
        report.check("DATABASE_URL" in ct.env, f"{where}: the api gets DATABASE_URL")
    if ct.pod.get("enableServiceLinks", True) is not False:
        clash = service_link_names(services) & h.env
        report.check(not clash, f"{where}: service links are on and would set {', '.join(sorted(clash))}, which holdfast reads (set enableServiceLinks: false)")

    # Listeners: what the role binds, given the manifest's environment.
    listeners = {}
    for option, kind in (("listen", "public"), ("admin-listen", "admin")):
        got = h.listener(option, ct.env)
        if got is None:
            continue
        address, source = got
        try:
            host, port = port_of(address)
        except ValueError:
            report.fail(f"{where}: {source} = {address!r} is no host:port")
            continue
        report.check(host in ("0.0.0.0", "::", ""), f"{where}: the {kind} listener ({source} = {address}) binds every interface, not {host} (the kubelet and Services could not reach it)")
        listeners[kind] = port
    ports = ct.ports()
    for name, number in ports.items():
        report.check(number in listeners.values(), f"{where}: containerPort {name or ''} {number} is one `holdfast {role}` listens on ({sorted(listeners.values())})")
    for kind, number in listeners.items():
        report.check(number in ct.port_numbers(), f"{where}: the {kind} listener {number} is a declared containerPort")
    health_port = listeners.get("admin", listeners.get("public"))

    # Probes.
    probes = {}
    for probe_kind, path in (("livenessProbe", "/health/live"), ("readinessProbe", "/health/ready"), ("startupProbe", None)):
        probe = ct.c.get(probe_kind)
        if probe is None:
            report.check(probe_kind == "startupProbe", f"{where}: has a {probe_kind}")
            continue
        get = probe.get("httpGet")
        if not report.check(get is not None, f"{where}: {probe_kind} is an httpGet"):
            continue
        port = ct.resolve_port(get["port"])
        report.check(port is not None, f"{where}: {probe_kind} port {get['port']!r} is a declared containerPort")
        report.check(port == health_port, f"{where}: {probe_kind} port {get['port']!r} ({port}) is the role's admin listener {health_port}")
        if path:
            report.check(get.get("path") == path, f"{where}: {probe_kind} asks {path} (not {get.get('path')!r})")
        probes[probe_kind] = (get.get("path", "/"), port, probe)

    # Shutdown: the grace period covers the preStop pause and the drain.
    grace = ct.pod.get("terminationGracePeriodSeconds", 30)
    pause = ((ct.c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
    if role == "worker":
        drain = seconds(h.setting("drain-timeout", ct.env))
        report.check(grace > pause + drain, f"{where}: terminationGracePeriodSeconds {grace} > preStop {pause} s + drain {drain:g} s")
    if role == "ingress":
        deadline = seconds(h.setting("default-timeout", ct.env))
        report.check(grace > pause + deadline, f"{where}: terminationGracePeriodSeconds {grace} > preStop {pause} s + request deadline {deadline:g} s")

    # Security context (the pod's, overridden by the container's).
    psc, csc = ct.pod.get("securityContext", {}), ct.c.get("securityContext", {})
    def eff(key):
        return csc.get(key, psc.get(key))
    report.check(eff("runAsNonRoot") is True, f"{where}: runAsNonRoot")
    report.check(eff("runAsUser") == 65532, f"{where}: runAsUser 65532 (the image's user)")
    report.check(csc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
    report.check(csc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation false")
    report.check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), f"{where}: capabilities drop ALL")
    report.check((eff("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{where}: seccompProfile RuntimeDefault")
    writable = [m["mountPath"].rstrip("/") for m in ct.c.get("volumeMounts", []) if not m.get("readOnly")]
    report.check("/tmp" in writable, f"{where}: /tmp is a writable volume (the root file system is read-only)")
    db = (ct.env.get("DATABASE_URL") or Value(None, "")).value or ""
    if role == "api" and db.startswith("sqlite:"):
        path = re.sub(r"^sqlite:(//)?", "", db).split("?")[0]
        report.check(any(path.startswith(w + "/") for w in writable), f"{where}: the SQLite file {path} is on a writable volume")
    r = ct.c.get("resources", {})
    report.check(bool(r.get("requests")) and bool((r.get("limits") or {}).get("memory")), f"{where}: resource requests and a memory limit")
    return {"role": role, "listeners": listeners, "probes": probes, "grace": grace}


def check_objects(rendered, report, adapter_metrics):
    workloads = rendered.of_kind(*WORKLOAD_KINDS)

    def pods_selected(selector, namespace):
        return [w for w in workloads if ns(w) == namespace and selects(selector, w["spec"]["template"]["metadata"].get("labels", {}))]

    for svc in rendered.of_kind("Service"):
        where = f"[{rendered.name}] Service/{svc['metadata']['name']}"
        sel = svc["spec"].get("selector")
        if not sel:
            continue
        chosen = pods_selected(sel, ns(svc))
        if not report.check(chosen, f"{where}: selects a workload of the build"):
            continue
        for w in chosen:
            containers = w["spec"]["template"]["spec"]["containers"]
            for port in svc["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                found = any(
                    (p.get("name") == target if isinstance(target, str) else p["containerPort"] == target)
                    for c in containers for p in c.get("ports", [])
                )
                report.check(found, f"{where}: port {port.get('name', port['port'])} targetPort {target!r} is a containerPort of {w['kind']}/{w['metadata']['name']}")

    services = {(ns(s), s["metadata"]["name"]): s for s in rendered.of_kind("Service")}
    for ing in rendered.of_kind("Ingress"):
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                b = path["backend"]["service"]
                where = f"[{rendered.name}] Ingress/{ing['metadata']['name']} {rule.get('host', '*')}{path['path']}"
                svc = services.get((ns(ing), b["name"]))
                if not report.check(svc is not None, f"{where}: Service {b['name']} exists"):
                    continue
                want = b["port"]
                ok = any(p.get("name") == want.get("name") if "name" in want else p["port"] == want.get("number") for p in svc["spec"]["ports"])
                report.check(ok, f"{where}: Service {b['name']} has port {want}")

    for hpa in rendered.of_kind("HorizontalPodAutoscaler"):
        where = f"[{rendered.name}] HorizontalPodAutoscaler/{hpa['metadata']['name']}"
        ref = hpa["spec"]["scaleTargetRef"]
        target = rendered.find(ref["kind"], ref["name"], ns(hpa))
        if report.check(target is not None, f"{where}: scales {ref['kind']}/{ref['name']}, which exists"):
            report.check("replicas" not in target["spec"], f"{where}: {ref['name']} sets no replicas (an apply would reset what the autoscaler chose)")
        for m in hpa["spec"].get("metrics", []):
            if m["type"] == "Resource" and target is not None:
                name = m["resource"]["name"]
                for c in target["spec"]["template"]["spec"]["containers"]:
                    report.check(name in ((c.get("resources") or {}).get("requests") or {}), f"{where}: scales on {name}, which container {c['name']} requests")
            if m["type"] == "External":
                name = m["external"]["metric"]["name"]
                report.check(name in adapter_metrics, f"{where}: External metric {name} is one the Prometheus adapter rules serve ({sorted(adapter_metrics)})")

    for pdb in rendered.of_kind("PodDisruptionBudget"):
        report.check(pods_selected(pdb["spec"]["selector"], ns(pdb)), f"[{rendered.name}] PodDisruptionBudget/{pdb['metadata']['name']}: selects a workload")

    for pol in rendered.of_kind("NetworkPolicy"):
        where = f"[{rendered.name}] NetworkPolicy/{pol['metadata']['name']}"
        sel = pol["spec"].get("podSelector") or {}
        if not sel:
            continue
        chosen = pods_selected(sel, ns(pol))
        if not report.check(chosen, f"{where}: selects a workload"):
            continue
        declared = {p.get("name") for w in chosen for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        declared |= {p["containerPort"] for w in chosen for c in w["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for rule in pol["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                report.check(p.get("port") in declared, f"{where}: port {p.get('port')!r} is declared by a pod it selects")
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    report.check(pods_selected(peer["podSelector"], ns(pol)), f"{where}: the pods it lets in ({peer['podSelector']}) exist")


def adapter_metric_names(path):
    with open(path) as f:
        config = yaml.safe_load(f)
    names = set()
    for rule in config.get("externalRules", []) + config.get("rules", []):
        name = rule.get("name", {})
        names.add(name.get("as") or re.sub(r"[\^$]", "", name.get("matches", "")))
    return names


# --- running the roles -----------------------------------------------------


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """Every process started here; all of them are stopped in the end."""

    def __init__(self):
        self.procs = []

    def start(self, argv, env, cwd, log):
        out = open(log, "wb")
        p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()
        self.procs.append(p)
        return p

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []


def start_redis(procs, workdir):
    redis = shutil.which("redis-server")
    if redis is None:
        raise SystemExit("redis-server is missing (apt-get install redis-server)")
    port = free_port()
    procs.start([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir], dict(PATH=os.environ.get("PATH", "/usr/bin:/bin")), workdir, os.path.join(workdir, "redis.log"))
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the private redis-server did not answer PING")


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return r.status, r.read(300)
    except urllib.error.HTTPError as e:
        return e.code, e.read(300)
    except (OSError, urllib.error.URLError) as e:
        return None, str(e).encode()


def run_overlay(binary, rendered, containers, facts, services, redis_port, workdir, procs, report):
    """Starts every holdfast container of one build; asks its probes."""
    running = []
    for ct, fact in zip(containers, facts):
        if fact is None:
            continue
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOSTNAME": ct.pod_name}
        if ct.pod.get("enableServiceLinks", True) is not False:
            env.update(service_link_values(services))
        for name, v in ct.env.items():
            if v.value is not None and name not in HOST_SPECIFIC:
                env[name] = v.value
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/"
        d = tempfile.mkdtemp(prefix=f"{rendered.name}-{fact['role']}-", dir=workdir)
        if fact["role"] == "api":
            env["DATABASE_URL"] = f"sqlite://{d}/holdfast.db?mode=rwc"
        mapped = {}
        for kind, var in (("public", "HOLDFAST_LISTEN"), ("admin", "HOLDFAST_ADMIN_LISTEN")):
            if kind in fact["listeners"]:
                local = free_port()
                mapped[fact["listeners"][kind]] = local
                env[var] = f"127.0.0.1:{local}"
        log = os.path.join(d, "out.log")
        p = procs.start([binary, fact["role"]], env, d, log)
        running.append((ct, fact, p, mapped, log))

    for ct, fact, p, mapped, log in running:
        for probe_kind, (path, port, _probe) in fact["probes"].items():
            what = f"{ct.where}: {probe_kind} GET {path} on container port {port} answers 200 when run here"
            if port not in mapped:
                report.fail(f"{what} (port {port} is no listener of the role)")
                continue
            url = f"http://127.0.0.1:{mapped[port]}{path}"
            deadline = time.time() + BOOT_SECONDS
            status, body = None, b""
            while time.time() < deadline and p.poll() is None:
                status, body = get(url)
                if status == 200:
                    break
                time.sleep(0.25)
            if not report.check(status == 200, what):
                exited = "" if p.poll() is None else f"; the process exited with {p.returncode}"
                print(f"     last answer: {status} {body[:200]!r}{exited}")
                with open(log, "rb") as f:
                    tail = f.read()[-1500:].decode(errors="replace")
                print("     its output ends with:\n" + "\n".join("       " + line for line in tail.splitlines()))
            else:
                print(f"ok   {ct.where}: {probe_kind} {path} -> 200")

    # SIGTERM: each role stops within its grace period (idle, so at once).
    for ct, fact, p, mapped, log in running:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for ct, fact, p, mapped, log in running:
        limit = min(fact["grace"], 30)
        try:
            p.wait(timeout=limit)
            report.check(True, "")
        except subprocess.TimeoutExpired:
            report.fail(f"{ct.where}: did not exit within {limit} s of SIGTERM")
            p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=os.environ.get("HOLDFAST_BIN", "target/debug/holdfast"))
    ap.add_argument(
        "--adapter-rules",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "deploy", "k8s", "prometheus-adapter", "rules.yaml"),
        help="the Prometheus adapter rules the External metrics must be in (default: deploy/k8s/prometheus-adapter/rules.yaml)",
    )
    ap.add_argument("--no-run", action="store_true", help="the static checks only")
    ap.add_argument("rendered", nargs="+", help="NAME=FILE, the output of kubectl kustomize")
    args = ap.parse_args()

    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"no holdfast binary at {binary} (build it, or pass --bin / HOLDFAST_BIN)")
    print(f"holdfast binary: {binary}")
    helps = {role: RoleHelp(binary, role) for role in ROLES}
    adapter_metrics = adapter_metric_names(args.adapter_rules)
    report = Report()

    builds = []
    for item in args.rendered:
        name, _, path = item.partition("=")
        rendered = Rendered(name, path)
        check_objects(rendered, report, adapter_metrics)
        containers, facts = [], []
        for w in rendered.of_kind(*WORKLOAD_KINDS):
            services = [s for s in rendered.of_kind("Service") if ns(s) == ns(w)]
            for c in w["spec"]["template"]["spec"]["containers"]:
                if is_holdfast(c):
                    ct = Container(rendered, w, c, report)
                    containers.append(ct)
                    facts.append(check_container(ct, helps, services, report))
        roles = sorted({f["role"] for f in facts if f})
        report.check(roles == sorted(ROLES), f"[{name}] runs every role (it runs {', '.join(roles)})")
        builds.append((rendered, containers, facts))
        print(f"[{name}] static checks done: {len(containers)} holdfast containers")

    if not args.no_run:
        procs = Processes()
        workdir = tempfile.mkdtemp(prefix="holdfast-k8s-contract-")

        def on_signal(signum, _frame):
            raise SystemExit(f"stopped by signal {signum}")

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            redis_port = start_redis(procs, workdir)
            print(f"private redis-server on 127.0.0.1:{redis_port}")
            for rendered, containers, facts in builds:
                services = rendered.of_kind("Service")
                print(f"[{rendered.name}] starting {sum(1 for f in facts if f)} roles with the manifest's environment")
                run_overlay(binary, rendered, containers, facts, services, redis_port, workdir, procs, report)
        finally:
            procs.stop_all()
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"k8s contract: {report.passed} passed, {len(report.failures)} failed")
    if report.failures:
        print("failures:")
        for f in report.failures:
            print(f"  - {f}")
        sys.exit(1)


if __name__ == "__main__":
    main()
