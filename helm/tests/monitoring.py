"""Checks of the chart's monitoring objects: the Grafana dashboard ConfigMap
and the PrometheusRule. Used by validate.py, per scenario.

Every PromQL expression (each dashboard query, each alert) is parsed by
promql-parser (GreptimeDB's PromQL parser, in Rust, as a Python wheel) and
each metric it names must be one the services register: the names are read
from services/*/src/metrics.rs (`sub_registry_with_prefix`, `register`,
`register_with_unit` and the type of the registered field), with the
suffixes the Prometheus client adds (`_total` for counters, the unit,
`_bucket`/`_sum`/`_count` for histograms); a `reason` a query matches on
must be a string of the services' code. A running stack's /metrics is
checked against the same files by services/testkit/tests/metrics_named.rs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import promql_parser

DASHBOARD_FILE = "helm/rill/dashboards/rill.json"
DASHBOARD_KEY = "rill.json"
RUNBOOK = "docs/RUNBOOK.md"
# Each alert of the brief (issue 19.3; the sequencer's, issue 17) and the
# values that tune it.
ALERTS = {
    "RillEdgeWarning": "edgeWarning",
    "RillEdgeCritical": "edgeCritical",
    "RillProduceErrors": "produceErrors",
    "RillRedisLockQuorumLost": "redisLockQuorumLost",
    "RillConsumerLagGrowing": "consumerLagGrowing",
    "RillPersistBehind": "persistBehind",
    "RillSequencerAborting": "sequencerAborting",
    "RillSequencerDown": "sequencerDown",
}
# Grafana's own variables, replaced by a duration so that a query parses.
GRAFANA_DURATIONS = re.compile(r"\$__(rate_interval|interval|range)\b")
# label_values(<metric>, <label>) of a query variable.
LABEL_VALUES = re.compile(r"^label_values\((\w+),\s*\w+\)$")
REGISTER = re.compile(
    r"\.register(?:_with_unit)?\(\s*\"(\w+)\",\s*\"(?:[^\"\\]|\\.)*\",\s*(?:Unit::(\w+),\s*)?self\.(\w+)\.clone\(\)",
    re.S,
)
UNITS = {"Seconds": "seconds", "Bytes": "bytes"}


def known_series(repo: Path) -> dict[str, str]:
    """Every series name the services export -> the metrics.rs it comes from."""
    out: dict[str, str] = {}
    for path in sorted(repo.glob("services/*/src/metrics.rs")):
        text = path.read_text()
        prefix = re.search(r'sub_registry_with_prefix\("(\w+)"\)', text)
        if not prefix:
            continue
        # The fields of the structs (not the `Default` impl's values).
        structs = "\n".join(re.findall(r"^pub struct \w+ \{\n(.*?)^\}", text, re.M | re.S))
        fields = dict(re.findall(r"^\s*(?:pub )?(\w+): ([^\n]+?),?$", structs, re.M))
        for name, unit, field in REGISTER.findall(text):
            kind = fields.get(field, "")
            base = f"{prefix.group(1)}_{name}" + (f"_{UNITS[unit]}" if unit else "")
            where = str(path.relative_to(repo))
            if "Histogram" in kind:
                for suffix in ("_bucket", "_sum", "_count"):
                    out[base + suffix] = where
            elif "Counter" in kind:
                out[base + "_total"] = where
            elif "Gauge" in kind:
                out[base] = where
    return out


def code_strings(repo: Path) -> set[str]:
    """Every lower-case string literal of the services' code: a label value
    a query matches on (a `reason`) must be one of them."""
    out: set[str] = set()
    for path in repo.glob("services/*/src/**/*.rs"):
        out.update(re.findall(r'"([a-z][a-z0-9_]*)"', path.read_text()))
    return out


def selectors(expr: str) -> list[tuple[str | None, dict[str, tuple[str, str]]]]:
    """(metric name, {label: (op, value)}) of each selector; ValueError if
    `expr` does not parse."""
    found = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            matchers = {m.name: (str(m.op).rsplit(".", 1)[-1], m.value) for m in node.matchers.matchers}
            found.append((node.name, matchers))
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _check_expr(expr: str, where: str, known: dict[str, str], namespace: str, strings: set[str]) -> list[str]:
    try:
        found = selectors(GRAFANA_DURATIONS.sub("5m", expr))
    except ValueError as error:
        return [f"{where}: does not parse: {error}: {expr}"]
    out = []
    for name, matchers in found:
        if name not in known:
            out.append(f"{where}: names {name}, which no services/*/src/metrics.rs registers")
        op, value = matchers.get("reason", ("", ""))
        for reason in value.split("|") if op in ("Equal", "Re") else []:
            if reason not in strings:
                out.append(f"{where}: {name}{{reason={reason!r}}}: no such string in services/*/src")
        if matchers.get("namespace") != ("Equal", namespace):
            out.append(f"{where}: {name} is not limited to namespace {namespace!r}: {matchers}")
    if not found:
        out.append(f"{where}: names no metric: {expr}")
    return out


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug)
    return out


def check_dashboard(kinds: dict, values: dict, repo: Path) -> list[str]:
    v = values["metrics"]["dashboard"]
    maps = {n: o for n, o in kinds["ConfigMap"].items() if DASHBOARD_KEY in o.get("data", {})}
    if not v["enabled"]:
        return ["metrics.dashboard.enabled is false but the dashboard is rendered"] if maps else []
    if len(maps) != 1:
        return [f"want one dashboard ConfigMap, got {len(maps)}"]
    (name, cm), = maps.items()
    where = f"ConfigMap/{name}"
    out = []
    labels = cm["metadata"].get("labels", {})
    for key, value in v["labels"].items():
        if labels.get(key) != value:
            out.append(f"{where}: label {key}={labels.get(key)!r}, values say {value!r} (the sidecar finds it by this)")
    if v["namespace"] and cm["metadata"].get("namespace") != v["namespace"]:
        out.append(f"{where}: namespace {cm['metadata'].get('namespace')!r}, values say {v['namespace']!r}")
    text = cm["data"][DASHBOARD_KEY]
    if text.strip() != (repo / DASHBOARD_FILE).read_text().strip():
        out.append(f"{where}: {DASHBOARD_KEY} is not {DASHBOARD_FILE} as it is")
    try:
        dashboard = json.loads(text)
    except json.JSONDecodeError as error:
        return out + [f"{where}: {DASHBOARD_KEY} is not JSON: {error}"]
    out += check_dashboard_json(dashboard, f"{where}: {DASHBOARD_KEY}", known_series(repo), code_strings(repo))
    queries = sum(len(p.get("targets", [])) for p in dashboard.get("panels", []))
    print(f"  checked: dashboard: {len(dashboard.get('panels', []))} panels, {queries} queries against the metrics.rs files")
    return out


def check_dashboard_json(dashboard: dict, where: str, known: dict[str, str], strings: set[str]) -> list[str]:
    out = []
    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        if key not in dashboard:
            out.append(f"{where}: no {key}")
    variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("query") != "prometheus":
        out.append(f"{where}: no `datasource` variable of type prometheus")
    namespace = variables.get("namespace", {})
    query = namespace.get("query", {})
    query = query.get("query", "") if isinstance(query, dict) else query
    m = LABEL_VALUES.match(query)
    if not m or m.group(1) not in known:
        out.append(f"{where}: variable `namespace` is not label_values(<known metric>, namespace): {query!r}")
    ids = set()
    for panel in dashboard.get("panels", []):
        title = panel.get("title", "?")
        pw = f"{where}: panel {panel.get('id')} {title!r}"
        if panel.get("id") in ids:
            out.append(f"{pw}: id used twice")
        ids.add(panel.get("id"))
        grid = panel.get("gridPos", {})
        if not {"h", "w", "x", "y"} <= grid.keys() or grid["x"] + grid["w"] > 24:
            out.append(f"{pw}: gridPos {grid} is not within the 24 columns")
        if panel.get("type") == "row":
            continue
        if panel.get("datasource", {}).get("uid") != "${datasource}":
            out.append(f"{pw}: datasource is not ${{datasource}}")
        targets = panel.get("targets", [])
        if not targets or not panel.get("description"):
            out.append(f"{pw}: needs queries and a description")
        for target in targets:
            out += _check_expr(target.get("expr", ""), f"{pw} {target.get('refId')}", known, "$namespace", strings)
    return out


def check_alerts(kinds: dict, values: dict, repo: Path, namespace: str) -> list[str]:
    v = values["metrics"]["alerts"]
    rules = kinds["PrometheusRule"]
    if not v["enabled"]:
        return ["metrics.alerts.enabled is false but a PrometheusRule is rendered"] if rules else []
    if len(rules) != 1:
        return [f"want one PrometheusRule, got {len(rules)}"]
    (name, obj), = rules.items()
    where = f"PrometheusRule/{name}"
    out = []
    labels = obj["metadata"].get("labels", {})
    for key, value in v["labels"].items():
        if labels.get(key) != value:
            out.append(f"{where}: label {key}={labels.get(key)!r}, values say {value!r}")
    known = known_series(repo)
    strings = code_strings(repo)
    runbook = anchors((repo / RUNBOOK).read_text())
    exprs: dict[str, str] = {}
    count = 0
    for group in obj["spec"]["groups"]:
        for rule in group["rules"]:
            count += 1
            alert = rule["alert"]
            rw = f"{where}: {alert}"
            exprs[alert] = exprs.get(alert, "") + "\n" + str(rule["expr"])
            out += _check_expr(str(rule["expr"]), rw, known, namespace, strings)
            tuning = v.get(ALERTS.get(alert, ""), {})
            if not tuning:
                out.append(f"{rw}: not one of the chart's alerts {sorted(ALERTS)}")
            elif rule.get("for") != tuning["for"]:
                out.append(f"{rw}: for {rule.get('for')!r}, values say {tuning['for']!r}")
            for key, value in v["ruleLabels"].items():
                if rule["labels"].get(key) != value:
                    out.append(f"{rw}: rule label {key} is {rule['labels'].get(key)!r}, values say {value!r}")
            url = rule["annotations"]["runbook_url"]
            base, _, anchor = url.partition("#")
            if base != v["runbookUrl"] or anchor != alert.lower():
                out.append(f"{rw}: runbook_url {url!r} is not {v['runbookUrl']}#{alert.lower()}")
            if anchor not in runbook:
                out.append(f"{rw}: {RUNBOOK} has no section #{anchor}")
    # Each threshold must reach an expr of its alert (as a whole number
    # token: 1000 is not found in 10000).
    for alert, expr in exprs.items():
        for key, value in v.get(ALERTS.get(alert, ""), {}).items():
            if key != "for" and not re.search(rf"(?<![\w.]){re.escape(str(value))}(?![\w.])", expr):
                out.append(f"{where}: {alert}: {ALERTS[alert]}.{key} ({value}) does not reach its expr")
    if set(exprs) != set(ALERTS):
        out.append(f"{where}: alerts {sorted(exprs)}, want {sorted(ALERTS)}")
    print(f"  checked: {count} alert rules against the metrics.rs files, the values and {RUNBOOK}")
    return out


def check(objects: list[tuple[str, dict]], values: dict, repo: Path, namespace: str) -> list[str]:
    kinds: dict[str, dict[str, dict]] = {"ConfigMap": {}, "PrometheusRule": {}}
    for _, obj in objects:
        if obj["kind"] in kinds:
            kinds[obj["kind"]][obj["metadata"]["name"]] = obj
    return check_dashboard(kinds, values, repo) + check_alerts(kinds, values, repo, namespace)
