"""Offline checks of the Helm chart (helm/rill) and the Dockerfiles (helm/docker).

Run by helm/tests/validate.sh, which provides a virtualenv with the pinned
packages of helm/tests/requirements.txt. No cluster, no `helm` binary, no
Docker engine and no network are needed:

1. The chart is linted and rendered by helm-python-sdk (Helm's own Go SDK,
   v4, in a shared library inside the wheel) for every scenario: the
   default values and each file in helm/tests/values/. Rendering also
   checks the values against helm/rill/values.schema.json.
2. Every rendered object is validated against the Kubernetes JSON schemas of
   kubernetes-validate, strict (unknown fields are errors), for each
   Kubernetes version in KUBE_VERSIONS. Kinds that are CRDs (Traefik's
   IngressRoute and Middleware, prometheus-operator's ServiceMonitor and
   PrometheusRule) are
   validated against the subset schemas in helm/tests/crd-schemas/; any
   other kind fails.
3. checks.py: what schemas cannot see (probes, grace period vs drain
   window, selectors, references between objects, secrets, settings names);
   monitoring.py: the Grafana dashboard and the PrometheusRule (each PromQL
   expression parses and names only metrics the services register, runbook
   sections exist, thresholds come from the values); security.py: the links
   to the backends (each workload's settings, CA mounts, credentials only
   from Secrets, the topics' replication) and the NetworkPolicies.
4. dockerfiles.py: what can be checked of a Dockerfile without building it.
5. Values that must be refused are refused (NEGATIVE), and the validators
   themselves reject known-bad objects (a guard against a check that
   silently passes everything).

Exits non-zero on any failure; the last line says PASS or FAIL.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import checks  # noqa: E402
import dockerfiles  # noqa: E402
import monitoring  # noqa: E402
import security  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "rill"
VALUES_DIR = REPO / "helm" / "tests" / "values"
CRD_SCHEMAS = REPO / "helm" / "tests" / "crd-schemas"

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the
# newest kubernetes-validate knows.
KUBE_VERSIONS = ["1.30.0", "1.37.0"]
RELEASE, NAMESPACE = "rill", "chat"

# Values that must not render, with a piece of the expected message.
NEGATIVE = {
    "no Cassandra contact point": ({"cassandra": {"contactPoints": []}}, "cassandra.contactPoints is required"),
    "minReplicas above maxReplicas": (
        {"edge": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}},
        "edge.autoscaling.minReplicas (5) is above maxReplicas (2)",
    ),
    "misspelt value": ({"edge": {"drainWindowSecs": 30}}, "additional properties 'drainWindowSecs' not allowed"),
    "bad sticky cookie name": ({"ingress": {"stickyCookie": "a b"}}, "/ingress/stickyCookie"),
    "alert duration not a Prometheus duration": (
        {"metrics": {"alerts": {"enabled": True, "edgeWarning": {"for": "10 minutes"}}}},
        "/metrics/alerts/edgeWarning/for",
    ),
    "sequencer transaction timeout below a second": (
        {"sequencer": {"transactionTimeoutMs": 500}},
        "/sequencer/transactionTimeoutMs",
    ),
    "a Redis password written in the values": (
        {"redis": {"urls": ["redis://:hunter2@redis:6379"]}},
        "carries credentials",
    ),
    "Redis credentials twice (URLs Secret and auth Secret)": (
        {"redis": {"existingSecret": "urls", "auth": {"existingSecret": "login"}}},
        "redis.auth.existingSecret goes with redis.urls",
    ),
    "Cassandra TLS without a CA": (
        {"cassandra": {"tls": {"enabled": True}}},
        "cassandra.tls.enabled needs cassandra.tls.ca.secret",
    ),
    "a CA from a Secret and a ConfigMap": (
        {"kafka": {"tls": {"enabled": True, "ca": {"secret": "a", "configMap": "b"}}}},
        "kafka.tls.ca: name a Secret or a ConfigMap, not both",
    ),
    "min.insync.replicas above the replication factor": (
        {"kafka": {"replicationFactor": 2, "minInsyncReplicas": 3}},
        "kafka.minInsyncReplicas (3) is above kafka.replicationFactor (2)",
    ),
    "a SASL mechanism the services do not speak": (
        {"kafka": {"sasl": {"existingSecret": "k", "mechanism": "GSSAPI"}}},
        "/kafka/sasl/mechanism",
    ),
    "misspelt alert threshold": (
        {"metrics": {"alerts": {"persistBehind": {"record": 5}}}},
        "additional properties 'record' not allowed",
    ),
}


class Failures:
    def __init__(self, quiet: bool = False) -> None:
        self.items: list[str] = []
        self.quiet = quiet

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")
        if not self.quiet:
            print(f"  FAIL {where}: {message}")


def scenarios() -> dict[str, dict | None]:
    out: dict[str, dict | None] = {"default": None}
    for path in sorted(VALUES_DIR.glob("*.yaml")):
        out[path.stem] = yaml.safe_load(path.read_text()) or {}
    return out


def render(values: dict | None) -> list[tuple[str, dict]]:
    """(template path, object) of every rendered manifest."""
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for template, text in sorted(manifests.items()):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append((template.removeprefix("rill/templates/"), doc))
    return objects


def crd_schema(obj: dict) -> dict | None:
    api = obj.get("apiVersion", "").replace("/", "-")
    path = CRD_SCHEMAS / f"{obj.get('kind', '').lower()}-{api}.json"
    return json.loads(path.read_text()) if path.exists() else None


def validate_object(obj: dict, where: str, failures: Failures) -> str:
    """Validates one object; returns how ("k8s" or "crd")."""
    schema = crd_schema(obj)
    if schema is not None:
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
        for error in errors:
            path = ".".join(str(p) for p in error.path)
            failures.add(where, f"CRD subset schema: {path}: {error.message}")
        return "crd"
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            failures.add(where, f"Kubernetes {version} strict: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            failures.add(where, f"no schema: {error.message} (a CRD needs helm/tests/crd-schemas/)")
    return "k8s"


def lint(values: dict | None, where: str, failures: Failures) -> None:
    for version in KUBE_VERSIONS:
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version=f"v{version}")
        for message in report.get("messages", []):
            if message.get("severity", 0) >= 2:  # warning or error
                failures.add(where, f"helm lint (Kubernetes {version}): {message['path']}: {message['error'].strip()}")
        for error in report.get("errors", []):
            if not any(error.strip() in f for f in failures.items):
                failures.add(where, f"helm lint (Kubernetes {version}): {error.strip()}")


def check_scenario(name: str, values: dict | None, failures: Failures) -> None:
    print(f"scenario {name}:")
    before = len(failures.items)
    lint(values, f"{name}", failures)
    try:
        objects = render(values)
    except helm.HelmError as error:
        failures.add(name, f"render failed: {error}")
        return
    counts = {"k8s": 0, "crd": 0}
    for template, obj in objects:
        where = f"{name}: {template}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        counts[validate_object(obj, where, failures)] += 1
    merged = helm_merged_values(values)
    for message in checks.check(objects, merged, REPO):
        failures.add(name, message)
    for message in monitoring.check(objects, merged, REPO, NAMESPACE):
        failures.add(name, message)
    for message in security.check(objects, merged, name):
        failures.add(name, message)
    kinds = sorted({f"{o['kind']}" for _, o in objects})
    status = "ok" if len(failures.items) == before else "FAILED"
    print(
        f"  {status}: {len(objects)} objects ({counts['k8s']} against Kubernetes "
        f"{' and '.join(KUBE_VERSIONS)} strict, {counts['crd']} CRD objects against subset schemas): "
        f"{', '.join(kinds)}"
    )


def helm_merged_values(values: dict | None) -> dict:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.merge_values(values)


def check_negative(failures: Failures) -> None:
    print("values that must be refused:")
    for what, (values, expected) in NEGATIVE.items():
        try:
            render(values)
        except helm.HelmError as error:
            if expected in str(error):
                print(f"  ok: {what}: refused")
            else:
                failures.add(f"negative: {what}", f"refused, but the message lacks {expected!r}: {error}")
            continue
        failures.add(f"negative: {what}", "rendered without error")


def check_validators(failures: Failures) -> None:
    """The validators must reject objects known to be wrong."""
    print("validators reject known-bad objects:")
    bad_deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replica": 1, "selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": []}}},
    }
    bad_route = {
        "apiVersion": "traefik.io/v1alpha1",
        "kind": "IngressRoute",
        "metadata": {"name": "x"},
        "spec": {"routes": [{"match": "PathPrefix(`/`)", "services": [{"name": "edge", "stickey": {}}]}]},
    }
    bad_rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "x"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "for": "5 min",
                                                     "labels": {"severity": "warning"}, "annotations": {}}]}]},
    }
    known = monitoring.known_series(REPO)
    bad_dashboard = {"uid": "x", "title": "x", "schemaVersion": 39, "templating": {"list": []}, "panels": [
        {"id": 1, "type": "timeseries", "title": "x", "description": "x", "datasource": {"uid": "${datasource}"},
         "gridPos": {"h": 8, "w": 8, "x": 0, "y": 0},
         "targets": [{"refId": "A", "expr": 'sum(rate(rill_edge_no_such_metric_total{namespace="$namespace"}[5m]))'},
                     {"refId": "B", "expr": "sum(rate(rill_edge_sends_accepted_total[5m])"},
                     {"refId": "C", "expr": "sum(rate(rill_edge_sends_accepted_total[5m]))"},
                     {"refId": "D", "expr": 'rill_edge_sends_refused_total{namespace="$namespace",reason="kafak"}'}]}]}
    dashboard_problems = monitoring.check_dashboard_json(bad_dashboard, "self-check", known, monitoring.code_strings(REPO))
    for what in ("no_such_metric", "does not parse", "not limited to namespace", "`datasource` variable", "'kafak'"):
        if any(what in p for p in dashboard_problems):
            print(f"  ok: dashboard check finds {what!r}")
        else:
            failures.add("validator self-check", f"the dashboard check missed {what!r}: {dashboard_problems}")
    check_security_validator(failures)
    for what, obj in [("Deployment with `replica`", bad_deployment), ("IngressRoute with `stickey`", bad_route),
                      ("PrometheusRule with `for: 5 min` and no annotations", bad_rule)]:
        probe = Failures(quiet=True)
        validate_object(obj, what, probe)
        if probe.items:
            print(f"  ok: {what}: rejected")
        else:
            failures.add("validator self-check", f"{what} was accepted")


def check_security_validator(failures: Failures) -> None:
    """security.py must see each of these faults in the secured scenario."""
    values = yaml.safe_load((VALUES_DIR / "secured.yaml").read_text())
    merged = helm_merged_values(values)

    def env_of(objects, kind, component):
        for _, obj in objects:
            labels = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
            if obj["kind"] == kind and labels.get("app.kubernetes.io/component") == component:
                return obj["spec"]["template"]["spec"]["containers"][0]["env"]
        raise LookupError(f"no {kind} of {component}")

    def password_as_value(objects):
        for e in env_of(objects, "Deployment", "edge"):
            if e["name"] == "REDIS_PASSWORD":
                e.pop("valueFrom")
                e["value"] = "hunter2"

    def password_in_url(objects):
        for e in env_of(objects, "Deployment", "api"):
            if e["name"] == "RILL_REDIS__URLS":
                e["value"] = e["value"].replace("$(REDIS_PASSWORD)", "hunter2", 1)

    def store_settings_in_sequencer(objects):
        env_of(objects, "StatefulSet", "sequencer").append(
            {"name": "RILL_STORE__CASSANDRA__CONTACT_POINTS", "value": "c:9042"})

    def ca_from_elsewhere(objects):
        for e in env_of(objects, "Deployment", "persist"):
            if e["name"] == "RILL_KAFKA__SSL_CA_FILE":
                e["value"] = "/etc/ssl/certs/ca.crt"

    def replication_one(objects):
        for e in env_of(objects, "Job", "create-topics"):
            if e["name"] == "RILL_KAFKA__REPLICATION_FACTOR":
                e["value"] = "1"

    def no_sequencer_policy(objects):
        objects[:] = [(t, o) for t, o in objects if not (o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-sequencer"))]

    def persist_open_to_all(objects):
        for _, o in objects:
            if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-persist"):
                o["spec"]["ingress"].append({"ports": [{"port": 8091, "protocol": "TCP"}]})

    def edge_egress_anywhere(objects):
        for _, o in objects:
            if o["kind"] == "NetworkPolicy" and o["metadata"]["name"].endswith("-edge"):
                o["spec"]["egress"].append({})

    faults = {
        "a password as a plain value": (password_as_value, "REDIS_PASSWORD holds a credential but is not a secretKeyRef"),
        "a password written into a Redis URL": (password_in_url, "RILL_REDIS__URLS has a credential written out"),
        "store settings in the sequencer": (store_settings_in_sequencer, "has the cassandra settings"),
        "a Kafka CA file not mounted": (ca_from_elsewhere, "is not in a read-only mounted volume"),
        "topics with one copy": (replication_one, "RILL_KAFKA__REPLICATION_FACTOR is '1'"),
        "no NetworkPolicy for the sequencer": (no_sequencer_policy, "selected by 0 NetworkPolicies"),
        "persist open to everybody": (persist_open_to_all, "lets in"),
        "the edges free to go anywhere": (edge_egress_anywhere, "lets out"),
    }
    clean = security.check(render(values), merged, "secured")
    if clean:
        failures.add("validator self-check", f"the secured scenario itself fails: {clean}")
    for what, (mutate, expected) in faults.items():
        objects = render(values)
        mutate(objects)
        problems = security.check(objects, merged, "secured")
        if any(expected in p for p in problems):
            print(f"  ok: security check finds {what}")
        else:
            failures.add("validator self-check", f"the security check missed {what} ({expected!r}): {problems}")


def main() -> int:
    print(
        f"helm-python-sdk (libhelm_c {helm.helm_c_version()}, Helm SDK {helm.helm_sdk_version()}), "
        f"kubernetes-validate {kubernetes_validate.__version__}"
    )
    failures = Failures()
    for name, values in scenarios().items():
        check_scenario(name, values, failures)
    check_negative(failures)
    check_validators(failures)
    print("Dockerfiles:")
    for message in dockerfiles.check(REPO, helm_merged_values(None)):
        failures.add("Dockerfiles", message)
    print("repository cross-checks:")
    for message in checks.check_repo(REPO):
        failures.add("repository", message)
    if failures.items:
        print(f"helm/tests/validate.py: FAIL: {len(failures.items)} problem(s)")
        return 1
    print("helm/tests/validate.py: PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
