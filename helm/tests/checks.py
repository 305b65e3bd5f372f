"""What the schemas cannot see: checks of the rendered chart as a whole, and
of the chart against the rest of the repository. Used by validate.py.

Each function returns a list of failure messages (empty: all good) and
prints notes for what is knowingly not checked yet.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import yaml

COMPONENTS = ("edge", "api", "persist", "sequencer")
# The kind of each component's workload: a Deployment unless named here. The
# sequencer's pods need names that last across restarts (the pod's namespace
# and name are its Kafka transactional id), and never two pods of one name at
# once.
WORKLOAD_KINDS = {"sequencer": "StatefulSet"}
# The custom metric the edge HPA scales on: the edge's gauge
# rill_edge_live_sessions (services/edge/src/metrics.rs), per pod.
EDGE_METRIC = "rill_edge_live_sessions"
ADMIN_COMMANDS = {"create-topics", "apply-schema"}
# Settings the chart may set before the services know them (name ->
# why): a note, not a failure, while the name is missing from the Rust
# settings structs. Empty: every variable must name a real setting.
PENDING_SETTINGS: dict[str, str] = {}
# Values whose content is passed through to Kubernetes as it is: documented
# as one key, not leaf by leaf.
OPAQUE_VALUES = {
    "resources", "podSecurityContext", "securityContext", "podAnnotations", "nodeSelector",
    "affinity", "labels", "tolerations", "env", "imagePullSecrets",
}


def _labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def settings_fields(repo: Path) -> set[str]:
    """Every `pub <field>:` of the services' settings structs."""
    fields: set[str] = set()
    for path in repo.glob("services/*/src/**/*.rs"):
        if "settings" in path.name or path.name == "session_cookie.rs":
            fields.update(re.findall(r"^\s*pub (\w+):", path.read_text(), re.M))
    return fields


def check(objects: list[tuple[str, dict]], values: dict, repo: Path) -> list[str]:
    out: list[str] = []
    kinds: dict[str, dict[str, dict]] = defaultdict(dict)
    for _, obj in objects:
        kinds[obj["kind"]][obj["metadata"]["name"]] = obj
    out += _check_workloads(kinds, values)
    out += _check_pods(kinds, values, repo)
    out += _check_jobs(kinds, values)
    out += _check_ingress(kinds, values)
    out += _check_service_monitor(kinds, values)
    return out


def _workloads(kinds: dict):
    for kind in ("Deployment", "StatefulSet"):
        for name, obj in kinds[kind].items():
            yield kind, name, obj


def _check_workloads(kinds: dict, values: dict) -> list[str]:
    out = []
    seen = set()
    for kind, name, d in _workloads(kinds):
        labels = d["spec"]["template"]["metadata"]["labels"]
        comp = labels.get("app.kubernetes.io/component")
        where = f"{kind}/{name}"
        if comp not in COMPONENTS:
            out.append(f"{where}: unknown component {comp!r}")
            continue
        seen.add(comp)
        if kind != WORKLOAD_KINDS.get(comp, "Deployment"):
            out.append(f"{where}: {comp} must be a {WORKLOAD_KINDS.get(comp, 'Deployment')}")
        v = values[comp]
        if not _labels_match(d["spec"]["selector"]["matchLabels"], labels):
            out.append(f"{where}: selector does not match the pod labels")
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = _env(c)
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if ports.get("http") != v["port"]:
            out.append(f"{where}: container port `http` is {ports.get('http')}, values say {v['port']}")
        listen = env.get("RILL_LISTEN", {}).get("value", "")
        if listen != f"0.0.0.0:{v['port']}":
            out.append(f"{where}: RILL_LISTEN is {listen!r}, not 0.0.0.0:{v['port']}")
        for probe, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")]:
            get = c.get(probe, {}).get("httpGet", {})
            if get.get("path") != path or get.get("port") != "http":
                out.append(f"{where}: {probe} is not GET {path} on port http: {get}")
        for part in ("requests", "limits"):
            for res in ("cpu", "memory"):
                if not c.get("resources", {}).get(part, {}).get(res):
                    out.append(f"{where}: no resources.{part}.{res}")
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            out.append(f"{where}: pod does not set runAsNonRoot")
        if not re.search(rf"(^|/)rill-{comp}:[^:/]+$", c["image"]):
            out.append(f"{where}: image {c['image']!r} is not rill-{comp}:<tag> (helm/docker/{comp}.Dockerfile)")
        grace = pod.get("terminationGracePeriodSeconds")
        pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        if comp == "edge":
            window = v["drainWindowSeconds"]
            drain_env = env.get("RILL_DRAIN__WINDOW_SECS", {}).get("value")
            if drain_env != str(window):
                out.append(f"{where}: RILL_DRAIN__WINDOW_SECS is {drain_env!r}, values say {window}")
            if pre != v["preStopSleepSeconds"]:
                out.append(f"{where}: preStop sleeps {pre}s, values say {v['preStopSleepSeconds']}")
            if grace != pre + window + v["shutdownMarginSeconds"] or grace <= pre + window:
                out.append(f"{where}: grace period {grace}s does not cover preStop {pre}s + drain window {window}s + margin")
        elif grace is None or grace <= pre:
            out.append(f"{where}: grace period {grace} does not exceed the preStop sleep {pre}s")
        if comp == "sequencer":
            out += _check_sequencer(kinds, d, where, v, env, labels)
        elif "RILL_TRANSACTIONAL_ID" in env:
            out.append(f"{where}: sets RILL_TRANSACTIONAL_ID, which only a StatefulSet's pod name keeps stable")
        # Service, PodDisruptionBudget, HPA of the same pods.
        services = [s for s in kinds["Service"].values() if _labels_match(s["spec"].get("selector", {}), labels)]
        if not any(p.get("targetPort") == "http" for s in services for p in s["spec"]["ports"]):
            out.append(f"{where}: no Service sends port `http` to its pods")
        if not any(_labels_match(p["spec"]["selector"].get("matchLabels", {}), labels) for p in kinds["PodDisruptionBudget"].values()):
            out.append(f"{where}: no PodDisruptionBudget selects its pods")
        out += _check_hpa(kinds, d, comp, v, c)
    for comp in set(COMPONENTS) - seen:
        out.append(f"no {WORKLOAD_KINDS.get(comp, 'Deployment')} for {comp}")
    return out


def _check_sequencer(kinds: dict, sts: dict, where: str, v: dict, env: dict, labels: dict) -> list[str]:
    """The sequencer's StatefulSet: its transactional id is the pod's
    namespace and name (stable across restarts, unique across releases
    sharing a Kafka), it keeps nothing on disk, its Service is the headless
    one it names."""
    out = []
    fields = {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    for name, path in fields.items():
        ref = env.get(name, {}).get("valueFrom", {}).get("fieldRef", {})
        if ref.get("fieldPath") != path:
            out.append(f"{where}: {name} is not the pod's {path}: {env.get(name)}")
    txn = env.get("RILL_TRANSACTIONAL_ID", {}).get("value")
    if txn != "$(POD_NAMESPACE).$(POD_NAME)":
        out.append(f"{where}: RILL_TRANSACTIONAL_ID is not the pod's namespace and name: {env.get('RILL_TRANSACTIONAL_ID')}")
    names = list(env)
    if "RILL_TRANSACTIONAL_ID" in names and any(n in names and names.index(n) > names.index("RILL_TRANSACTIONAL_ID") for n in fields):
        out.append(f"{where}: RILL_TRANSACTIONAL_ID comes before the variables it refers to (Kubernetes expands only earlier ones)")
    timeout = env.get("RILL_TRANSACTION_TIMEOUT_MS", {}).get("value")
    if timeout != str(v["transactionTimeoutMs"]):
        out.append(f"{where}: RILL_TRANSACTION_TIMEOUT_MS is {timeout!r}, values say {v['transactionTimeoutMs']}")
    spec = sts["spec"]
    # Only CA certificates (Secrets, ConfigMaps) are mounted: nothing kept.
    kept = [v["name"] for v in spec["template"]["spec"].get("volumes", []) if not ({"secret", "configMap"} & v.keys())]
    if spec.get("volumeClaimTemplates") or kept:
        out.append(f"{where}: has volumes that keep data ({kept}); the sequencer's state is Kafka's")
    svc = kinds["Service"].get(spec.get("serviceName"))
    if svc is None:
        out.append(f"{where}: serviceName {spec.get('serviceName')!r} is not a rendered Service")
    elif svc["spec"].get("clusterIP") != "None" or not _labels_match(svc["spec"].get("selector", {}), labels):
        out.append(f"{where}: Service {svc['metadata']['name']} is not headless or does not select its pods")
    if spec.get("updateStrategy", {}).get("type") != "RollingUpdate":
        out.append(f"{where}: updateStrategy is not RollingUpdate: {spec.get('updateStrategy')}")
    return out


def _check_hpa(kinds: dict, d: dict, comp: str, v: dict, container: dict) -> list[str]:
    name = d["metadata"]["name"]
    where = f"{d['kind']}/{name}"
    hpas = [h for h in kinds["HorizontalPodAutoscaler"].values() if h["spec"]["scaleTargetRef"]["name"] == name]
    if not v.get("autoscaling", {}).get("enabled"):
        out = [f"{where}: autoscaling is off but an HPA targets it"] if hpas else []
        if d["spec"].get("replicas") != v["replicas"]:
            out.append(f"{where}: replicas {d['spec'].get('replicas')} != values {v['replicas']}")
        return out
    if len(hpas) != 1:
        return [f"{where}: autoscaling is on but {len(hpas)} HPAs target it"]
    out = []
    if "replicas" in d["spec"]:
        out.append(f"{where}: sets replicas although an HPA owns them")
    hpa = hpas[0]
    if hpa["spec"]["scaleTargetRef"].get("kind") != "Deployment":
        out.append(f"HPA/{name}: does not target a Deployment")
    metrics = hpa["spec"]["metrics"]
    if comp == "edge":
        want = {"type": "Pods", "pods": {"metric": {"name": EDGE_METRIC},
                "target": {"type": "AverageValue", "averageValue": str(v["autoscaling"]["liveSessionsPerPod"])}}}
        if metrics != [want]:
            out.append(f"HPA/{name}: metrics are {metrics}, want {[want]}")
    else:
        if [m.get("resource", {}).get("name") for m in metrics] != ["cpu"]:
            out.append(f"HPA/{name}: should scale on CPU: {metrics}")
        if not container.get("resources", {}).get("requests", {}).get("cpu"):
            out.append(f"HPA/{name}: CPU utilization needs a CPU request")
    return out


def _pod_specs(kinds: dict):
    for kind in ("Deployment", "StatefulSet", "Job"):
        for name, obj in kinds[kind].items():
            yield f"{kind}/{name}", obj["spec"]["template"]["spec"]


def _check_pods(kinds: dict, values: dict, repo: Path) -> list[str]:
    """Environment of every pod: names unique and known, secrets resolvable."""
    out = []
    existing: dict[str, set[str]] = defaultdict(set)
    for secret in (
        values["session"], values["redis"], values["redis"]["auth"], values["cassandra"]["auth"],
        values["kafka"]["sasl"], values["auth"]["tokens"],
    ):
        keys = {v for k, v in secret.items() if k.endswith("Key") and isinstance(v, str) and v}
        existing[secret["existingSecret"]] |= keys
    existing.pop("", None)
    fields = settings_fields(repo)
    notes = set()
    for where, pod in _pod_specs(kinds):
        for c in pod["containers"]:
            names = [e["name"] for e in c.get("env", [])]
            dups = {n for n in names if names.count(n) > 1}
            if dups:
                out.append(f"{where}: environment variables set twice: {sorted(dups)}")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    secret = kinds["Secret"].get(ref["name"])
                    if secret is not None:
                        if ref["key"] not in secret.get("data", {}):
                            out.append(f"{where}: {e['name']}: Secret {ref['name']} has no key {ref['key']}")
                    elif ref["key"] not in existing.get(ref["name"], set()):
                        out.append(f"{where}: {e['name']}: Secret {ref['name']}/{ref['key']} is neither rendered nor an existingSecret of the values")
                if e["name"].startswith("RILL_"):
                    unknown = [s for s in e["name"][5:].lower().split("__") if s not in fields]
                    if unknown and e["name"] in PENDING_SETTINGS:
                        notes.add(f"{e['name']}: not in the settings structs yet: {PENDING_SETTINGS[e['name']]}")
                    elif unknown:
                        out.append(f"{where}: {e['name']}: {unknown} is no field of any settings struct (services/*/src/**/settings.rs)")
    for note in sorted(notes):
        print(f"  note: {note}")
    return out


def _check_jobs(kinds: dict, values: dict) -> list[str]:
    out = []
    want = set()
    if values["kafka"]["createTopics"]:
        want.add("create-topics")
    if values["cassandra"]["applySchema"]:
        want.add("apply-schema")
    got = set()
    for name, job in kinds["Job"].items():
        pod = job["spec"]["template"]["spec"]
        c = pod["containers"][0]
        got.update(c.get("args", []))
        if not re.search(r"(^|/)rill-admin:[^:/]+$", c["image"]):
            out.append(f"Job/{name}: image {c['image']!r} is not rill-admin:<tag>")
        if set(c.get("args", [])) - ADMIN_COMMANDS or len(c.get("args", [])) != 1:
            out.append(f"Job/{name}: args {c.get('args')} are not one rill-admin command")
        hooks = job["metadata"].get("annotations", {}).get("helm.sh/hook", "")
        if set(hooks.split(",")) != {"pre-install", "pre-upgrade"}:
            out.append(f"Job/{name}: not a pre-install,pre-upgrade hook: {hooks!r}")
        if pod.get("restartPolicy") != "Never" or job["spec"].get("activeDeadlineSeconds") is None:
            out.append(f"Job/{name}: needs restartPolicy Never and a deadline")
    if got != want:
        out.append(f"Jobs run {sorted(got)}, values ask for {sorted(want)}")
    return out


def _check_ingress(kinds: dict, values: dict) -> list[str]:
    ing = values["ingress"]
    routes = kinds["IngressRoute"]
    if not ing["enabled"]:
        return ["ingress.enabled is false but an IngressRoute is rendered"] if routes else []
    if len(routes) != 1:
        return [f"want one IngressRoute, got {len(routes)}"]
    (name, route), = routes.items()
    out = []
    edge_svc = api_svc = None
    for r in route["spec"]["routes"]:
        for mw in r.get("middlewares", []):
            if mw["name"] not in kinds["Middleware"]:
                out.append(f"IngressRoute/{name}: middleware {mw['name']} is not rendered")
        for s in r["services"]:
            svc = kinds["Service"].get(s["name"])
            if svc is None:
                out.append(f"IngressRoute/{name}: Service {s['name']} is not rendered")
            elif s.get("port") not in {p["name"] for p in svc["spec"]["ports"]} | {p["port"] for p in svc["spec"]["ports"]}:
                out.append(f"IngressRoute/{name}: Service {s['name']} has no port {s.get('port')}")
            component = (svc or {}).get("metadata", {}).get("labels", {}).get("app.kubernetes.io/component")
            if "PathPrefix(`/`)" in r["match"]:
                edge_svc = (component, s.get("sticky", {}).get("cookie", {}))
            if "PathPrefix(`/api/`)" in r["match"]:
                api_svc = component
    if edge_svc is None or edge_svc[0] != "edge":
        out.append(f"IngressRoute/{name}: the catch-all route does not go to the edge Service")
    else:
        cookie = edge_svc[1]
        if cookie.get("name") != ing["stickyCookie"] or cookie.get("secure") != ing["tls"]["enabled"]:
            out.append(f"IngressRoute/{name}: sticky cookie {cookie} is not {ing['stickyCookie']!r} with secure={ing['tls']['enabled']}")
    if api_svc != "api":
        out.append(f"IngressRoute/{name}: /api/ does not go to the api Service")
    if ing["tls"]["enabled"] != ("tls" in route["spec"]):
        out.append(f"IngressRoute/{name}: tls section does not follow ingress.tls.enabled")
    return out


def _check_service_monitor(kinds: dict, values: dict) -> list[str]:
    monitors = kinds["ServiceMonitor"]
    if not values["metrics"]["serviceMonitor"]["enabled"]:
        return ["ServiceMonitor rendered although disabled"] if monitors else []
    out = []
    for name, sm in monitors.items():
        sel = sm["spec"]["selector"]
        matched = set()
        for svc in kinds["Service"].values():
            labels = svc["metadata"]["labels"]
            exprs_ok = all(labels.get(x["key"]) in x.get("values", []) for x in sel.get("matchExpressions", []) if x["operator"] == "In")
            if _labels_match(sel.get("matchLabels", {}), labels) and exprs_ok:
                matched.add(labels.get("app.kubernetes.io/component"))
                ports = {p["name"] for p in svc["spec"]["ports"]}
                for ep in sm["spec"]["endpoints"]:
                    if ep["port"] not in ports:
                        out.append(f"ServiceMonitor/{name}: Service {svc['metadata']['name']} has no port {ep['port']}")
        if matched != set(COMPONENTS):
            out.append(f"ServiceMonitor/{name}: selects {sorted(c for c in matched if c)}, not {list(COMPONENTS)}")
    return out


def _leaf_paths(values: dict, prefix: str = "") -> list[str]:
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in OPAQUE_VALUES:
            out += _leaf_paths(value, path + ".")
        else:
            out.append(path)
    return out


def check_repo(repo: Path) -> list[str]:
    """The chart against the code, the local Traefik config and the docs."""
    out = []
    metrics_rs = (repo / "services/edge/src/metrics.rs").read_text()
    if 'sub_registry_with_prefix("rill_edge")' not in metrics_rs or '"live_sessions"' not in metrics_rs:
        out.append(f"services/edge/src/metrics.rs no longer exports {EDGE_METRIC}: the edge HPA scales on it")
    adapter = yaml.safe_load((repo / "helm/prometheus-adapter.values.yaml").read_text())
    rule_names = [r["name"]["as"] for r in adapter["rules"]["custom"]]
    if EDGE_METRIC not in rule_names or EDGE_METRIC not in adapter["rules"]["custom"][0]["seriesQuery"]:
        out.append(f"helm/prometheus-adapter.values.yaml does not serve {EDGE_METRIC}: {rule_names}")
    values = yaml.safe_load((repo / "helm/rill/values.yaml").read_text())
    local = (repo / "traefik/local/dynamic.yml").read_text()
    m = re.search(r"cookie:\s*\n\s*name:\s*(\S+)", local)
    if not m or m.group(1) != values["ingress"]["stickyCookie"]:
        out.append(f"sticky cookie: chart {values['ingress']['stickyCookie']!r}, traefik/local {m and m.group(1)!r}")
    link = repo / "helm/rill/templates/traefik"
    if not link.is_symlink() or link.resolve() != (repo / "traefik/kubernetes").resolve():
        out.append("helm/rill/templates/traefik must be a symlink to traefik/kubernetes (one source for the routes)")
    readme = (repo / "README.md").read_text()
    deploy = readme[readme.find("## Deploy on Kubernetes"):] if "## Deploy on Kubernetes" in readme else ""
    if not deploy:
        out.append("README.md has no '## Deploy on Kubernetes' section")
    missing = [p for p in _leaf_paths(values) if f"`{p}`" not in deploy]
    if missing:
        out.append(f"values not described in README.md's Deploy section: {missing}")
    print(f"  checked: edge metric, adapter rule, sticky cookie name, routes symlink, {len(_leaf_paths(values))} values documented")
    return out
