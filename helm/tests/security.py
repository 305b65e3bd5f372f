"""The links to the backends and the NetworkPolicies (issue 16.4): checks of
a rendered chart, used by validate.py.

- Each workload gets the settings of exactly the backends it uses
  (BACKENDS, written here apart from the chart's own table), and with TLS
  on, the CA file its setting names is a mounted key of the Secret or
  ConfigMap the values name.
- Credentials are secretKeyRefs to the values' existingSecrets, never
  values; a Redis URL's user and password are only $(VAR)s of such
  references defined before it; the only Secret the chart writes is the
  generated cookie key.
- The create-topics Job asks for kafka.replicationFactor copies and
  kafka.minInsyncReplicas (3 and 2 by default), the keyspace
  cassandra.replicationFactor (3).
- NetworkPolicies: a default deny of every pod of the release, in and out,
  and one policy per workload that lets in exactly the peers it should
  (ALLOWED_IN) and out exactly DNS, its backends on their ports, the OTLP
  endpoint and the api's scrapes.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict

# Which backends each workload talks to (what its code opens: the edge
# reads memberships from the store; the Jobs one backend each).
BACKENDS = {
    "edge": {"kafka", "cassandra", "redis"},
    "api": {"kafka", "cassandra", "redis"},
    "persist": {"kafka", "cassandra"},
    "sequencer": {"kafka"},
    "create-topics": {"kafka"},
    "apply-schema": {"cassandra"},
}
# A variable each backend's settings always have.
MARKER = {
    "kafka": "RILL_KAFKA__BROKERS",
    "cassandra": "RILL_STORE__CASSANDRA__CONTACT_POINTS",
    "redis": "RILL_REDIS__URLS",
}
# Where each backend's CA file setting is.
CA_SETTING = {
    "kafka": "RILL_KAFKA__SSL_CA_FILE",
    "cassandra": "RILL_STORE__CASSANDRA__TLS_CA_FILE",
    "redis": "RILL_REDIS__CA_FILE",
}
# Who may open a connection to each service (names of value peers, or
# "api": the release's api pods). Jobs: nobody.
ALLOWED_IN = {
    "edge": {"ingressController", "prometheus", "api"},
    "api": {"ingressController", "prometheus"},
    "persist": {"prometheus", "api"},
    "sequencer": {"prometheus"},
}
DEFAULT_PORTS = {"kafka": 9092, "cassandra": 9042, "redis": 6379}
# Variables that hold a credential: only ever from a Secret.
CREDENTIAL = re.compile(r"(PASSWORD|USERNAME|COOKIE_KEY|TOKEN_SECRET)$")


def _env(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def _pods(kinds: dict):
    """(component, where, pod spec) of every workload and Job."""
    for kind in ("Deployment", "StatefulSet", "Job"):
        for name, obj in kinds[kind].items():
            tmpl = obj["spec"]["template"]
            yield tmpl["metadata"]["labels"].get("app.kubernetes.io/component"), f"{kind}/{name}", tmpl


def check(objects: list[tuple[str, dict]], values: dict, scenario: str) -> list[str]:
    kinds: dict[str, dict[str, dict]] = defaultdict(dict)
    for _, obj in objects:
        kinds[obj["kind"]][obj["metadata"]["name"]] = obj
    out: list[str] = []
    for comp, where, tmpl in _pods(kinds):
        if comp not in BACKENDS:
            out.append(f"{where}: unknown component {comp!r}")
            continue
        pod = tmpl["spec"]
        c = pod["containers"][0]
        out += _check_backends(where, comp, pod, c, values)
        out += _check_credentials(where, c, values)
    out += _check_replication(kinds, values, scenario)
    for name, secret in kinds["Secret"].items():
        if values["session"]["existingSecret"] or set(secret.get("data", {})) != {values["session"]["cookieKeyKey"]}:
            out.append(f"Secret/{name}: the chart writes no Secret but the generated cookie key")
    out += check_network_policies(kinds, values)
    return out


def _secret_ref(env: dict, name: str) -> tuple[str, str] | None:
    ref = env.get(name, {}).get("valueFrom", {}).get("secretKeyRef")
    return (ref["name"], ref["key"]) if ref else None


def _check_backends(where: str, comp: str, pod: dict, c: dict, values: dict) -> list[str]:
    out = []
    env = _env(c)
    mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    used_volumes = set()
    for backend in ("kafka", "cassandra", "redis"):
        wanted = backend in BACKENDS[comp]
        has = MARKER[backend] in env
        if wanted != has:
            out.append(f"{where}: {'lacks' if wanted else 'has'} the {backend} settings ({MARKER[backend]})")
        if not wanted:
            if any(n.startswith(MARKER[backend].rsplit("__", 1)[0] + "__") for n in env):
                out.append(f"{where}: sets {backend} settings it does not use")
            continue
        tls = values[backend]["tls"]
        ca = tls["ca"]
        ca_file = env.get(CA_SETTING[backend], {}).get("value")
        if tls["enabled"] and (ca["secret"] or ca["configMap"]):
            if ca_file is None:
                out.append(f"{where}: {backend} TLS with a CA, but no {CA_SETTING[backend]}")
                continue
            mount = mounts.get(posixpath.dirname(ca_file))
            volume = volumes.get(mount["name"]) if mount else None
            if not mount or not mount.get("readOnly") or volume is None:
                out.append(f"{where}: {CA_SETTING[backend]} {ca_file} is not in a read-only mounted volume")
                continue
            used_volumes.add(volume["name"])
            source = volume.get("secret", {}).get("secretName") or volume.get("configMap", {}).get("name")
            want_source = ca["secret"] or ca["configMap"]
            kind_ok = ("secret" in volume) == bool(ca["secret"])
            items = {i["path"]: i["key"] for i in (volume.get("secret") or volume.get("configMap") or {}).get("items", [])}
            if source != want_source or not kind_ok or items.get(posixpath.basename(ca_file)) != ca["key"]:
                out.append(f"{where}: {CA_SETTING[backend]} {ca_file} is not key {ca['key']!r} of {want_source!r}: {volume}")
        elif ca_file is not None:
            out.append(f"{where}: {CA_SETTING[backend]} is set although {backend}.tls asks for no CA of its own")
    for name in set(volumes) - used_volumes:
        out.append(f"{where}: volume {name} is not a CA file of a backend it uses")
    if "kafka" in BACKENDS[comp]:
        out += _check_kafka(where, env, values["kafka"])
    if "cassandra" in BACKENDS[comp]:
        auth = values["cassandra"]["auth"]
        for var, key in (("USERNAME", "usernameKey"), ("PASSWORD", "passwordKey")):
            ref = _secret_ref(env, f"RILL_STORE__CASSANDRA__{var}")
            want = (auth["existingSecret"], auth[key]) if auth["existingSecret"] else None
            if ref != want:
                out.append(f"{where}: RILL_STORE__CASSANDRA__{var} is {ref}, want the secretKeyRef {want}")
    if "redis" in BACKENDS[comp]:
        out += _check_redis(where, c, values["redis"])
    return out


def _check_kafka(where: str, env: dict, kafka: dict) -> list[str]:
    out = []
    sasl = kafka["sasl"]
    protocol = ("sasl_" if sasl["existingSecret"] else "") + ("ssl" if kafka["tls"]["enabled"] else "plaintext")
    got = env.get("RILL_KAFKA__SECURITY_PROTOCOL", {}).get("value", "plaintext")
    if got != protocol:
        out.append(f"{where}: RILL_KAFKA__SECURITY_PROTOCOL is {got!r}, values ask for {protocol!r}")
    for var, key in (("USERNAME", "usernameKey"), ("PASSWORD", "passwordKey")):
        ref = _secret_ref(env, f"RILL_KAFKA__SASL_{var}")
        want = (sasl["existingSecret"], sasl[key]) if sasl["existingSecret"] else None
        if ref != want:
            out.append(f"{where}: RILL_KAFKA__SASL_{var} is {ref}, want the secretKeyRef {want}")
    mechanism = env.get("RILL_KAFKA__SASL_MECHANISM", {}).get("value")
    if mechanism != (sasl["mechanism"] if sasl["existingSecret"] else None):
        out.append(f"{where}: RILL_KAFKA__SASL_MECHANISM is {mechanism!r}")
    return out


def _check_redis(where: str, c: dict, redis: dict) -> list[str]:
    """RILL_REDIS__URLS: from the URLs Secret, or composed of the values'
    addresses and $(VAR)s of the auth Secret defined before it."""
    out = []
    env_list = c.get("env", [])
    env = _env(c)
    urls_var = env["RILL_REDIS__URLS"]
    if redis["existingSecret"]:
        if _secret_ref(env, "RILL_REDIS__URLS") != (redis["existingSecret"], redis["urlsKey"]):
            out.append(f"{where}: RILL_REDIS__URLS is not the secretKeyRef {redis['existingSecret']}/{redis['urlsKey']}")
        return out
    before = {e["name"]: e for e in env_list[: env_list.index(urls_var)]}
    auth = redis["auth"]
    urls = urls_var.get("value", "").split(",")
    if len(urls) != len(redis["urls"]):
        out.append(f"{where}: RILL_REDIS__URLS has {len(urls)} URLs, values {len(redis['urls'])}")
    for url in urls:
        m = re.fullmatch(r"(rediss?)://(?:([^@]*)@)?([^@/]+)(/.*)?", url)
        if not m:
            out.append(f"{where}: RILL_REDIS__URLS: {url!r} is not a redis URL")
            continue
        scheme, login, _, _ = m.groups()
        if redis["tls"]["enabled"] and scheme != "rediss":
            out.append(f"{where}: {url!r} is not rediss:// although redis.tls.enabled")
        want_login = None
        if auth["existingSecret"]:
            want_login = ("$(REDIS_USERNAME)" if auth["usernameKey"] else "") + ":$(REDIS_PASSWORD)"
        if login != want_login:
            out.append(f"{where}: {url!r}: the login is {login!r}, want {want_login!r}")
        for var in re.findall(r"\$\((\w+)\)", login or ""):
            key = {"REDIS_USERNAME": auth["usernameKey"], "REDIS_PASSWORD": auth["passwordKey"]}.get(var)
            if _secret_ref(before, var) != (auth["existingSecret"], key):
                out.append(f"{where}: $({var}) in RILL_REDIS__URLS is not a secretKeyRef to "
                           f"{auth['existingSecret']}/{key} defined before it")
    return out


def _check_credentials(where: str, c: dict, values: dict) -> list[str]:
    out = []
    for e in c.get("env", []):
        if CREDENTIAL.search(e["name"]) and "secretKeyRef" not in e.get("valueFrom", {}):
            out.append(f"{where}: {e['name']} holds a credential but is not a secretKeyRef")
        if e["name"] == "RILL_REDIS__URLS" and "value" in e:
            logins = re.findall(r"//([^@/]*)@", e["value"])
            if any(re.sub(r"\$\(\w+\)", "", login).strip(":") for login in logins):
                out.append(f"{where}: RILL_REDIS__URLS has a credential written out: {e['value']!r}")
    return out


def _check_replication(kinds: dict, values: dict, scenario: str) -> list[str]:
    out = []
    want = {
        "RILL_KAFKA__REPLICATION_FACTOR": str(values["kafka"]["replicationFactor"]),
        "RILL_KAFKA__MIN_INSYNC_REPLICAS": str(values["kafka"]["minInsyncReplicas"]),
    }
    if scenario == "default" and list(want.values()) != ["3", "2"]:
        out.append(f"by default the topics get replication factor 3 and min.insync.replicas 2, not {list(want.values())}")
    if scenario == "default" and values["cassandra"]["replicationFactor"] != 3:
        out.append("by default the keyspace gets replication factor 3")
    for comp, where, tmpl in _pods(kinds):
        env = _env(tmpl["spec"]["containers"][0])
        for name, value in want.items():
            got = env.get(name, {}).get("value")
            if comp == "create-topics" and got != value:
                out.append(f"{where}: {name} is {got!r}, values ask for {value}")
            elif comp != "create-topics" and got is not None:
                out.append(f"{where}: sets {name}, which only the create-topics Job uses")
        if "cassandra" in BACKENDS.get(comp, ()):
            rf = env.get("RILL_STORE__CASSANDRA__REPLICATION_FACTOR", {}).get("value")
            if rf != str(values["cassandra"]["replicationFactor"]):
                out.append(f"{where}: RILL_STORE__CASSANDRA__REPLICATION_FACTOR is {rf!r}")
    return out


# -- NetworkPolicies ---------------------------------------------------------

def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()) and not selector.get("matchExpressions")


def _backend_ports(backend: str, values: dict) -> set[int]:
    given = values["networkPolicy"][backend]["ports"]
    if given:
        return set(given)
    if backend == "kafka":
        addresses = [a.strip() for a in values["kafka"]["brokers"].split(",")]
    elif backend == "cassandra":
        addresses = values["cassandra"]["contactPoints"]
    elif values["redis"]["existingSecret"]:
        return {DEFAULT_PORTS["redis"]}
    else:
        addresses = [re.sub(r"^rediss?://", "", u).split("/")[0] for u in values["redis"]["urls"]]
    ports = set()
    for a in addresses:
        m = re.search(r":(\d+)$", a)
        ports.add(int(m.group(1)) if m else DEFAULT_PORTS[backend])
    return ports


def _otlp_port(endpoint: str) -> int:
    m = re.match(r"(\w+)://[^/]*?(?::(\d+))?(/|$)", endpoint)
    return int(m.group(2)) if m and m.group(2) else (443 if endpoint.startswith("https") else 80)


def _rule_key(peers: list | None, ports: list | None) -> tuple:
    """A rule as something comparable: its peers and its (port, protocol)s."""
    return (repr(sorted(repr(p) for p in (peers or []))),
            tuple(sorted((p.get("port"), p.get("protocol", "TCP")) for p in (ports or []))))


def check_network_policies(kinds: dict, values: dict) -> list[str]:
    np = values["networkPolicy"]
    policies = kinds["NetworkPolicy"]
    if not np["enabled"]:
        return [f"networkPolicy.enabled is false but {sorted(policies)} are rendered"] if policies else []
    out = []
    pods = list(_pods(kinds))
    deny = [p for p in policies.values() if not p["spec"].get("ingress") and not p["spec"].get("egress")
            and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and all(_selects(p["spec"]["podSelector"], t["metadata"]["labels"]) for _, _, t in pods)
            and p["spec"]["podSelector"].get("matchLabels")
            and "app.kubernetes.io/component" not in p["spec"]["podSelector"]["matchLabels"]]
    if len(deny) != 1:
        out.append(f"want one default-deny NetworkPolicy (in and out) selecting every pod of the release, got {len(deny)}")
    ports_of = {c: values[c]["port"] for c in ALLOWED_IN}
    api_labels = next((t["metadata"]["labels"] for c, _, t in pods if c == "api"), {})
    for comp, where, tmpl in pods:
        labels = tmpl["metadata"]["labels"]
        own = [p for p in policies.values() if p not in deny and _selects(p["spec"]["podSelector"], labels)]
        if len(own) != 1:
            out.append(f"{where}: selected by {len(own)} NetworkPolicies besides the default deny, want 1")
            continue
        policy = own[0]
        name = f"NetworkPolicy/{policy['metadata']['name']}"
        if set(policy["spec"].get("policyTypes", [])) != {"Ingress", "Egress"}:
            out.append(f"{name}: policyTypes {policy['spec'].get('policyTypes')} are not Ingress and Egress")
        is_job = where.startswith("Job/")
        hooks = policy["metadata"].get("annotations", {}).get("helm.sh/hook")
        if is_job:
            job = kinds["Job"][where[4:]]
            weight = int(job["metadata"]["annotations"].get("helm.sh/hook-weight", 0))
            mine = int(policy["metadata"].get("annotations", {}).get("helm.sh/hook-weight", 0))
            if hooks != job["metadata"]["annotations"].get("helm.sh/hook") or mine >= weight:
                out.append(f"{name}: not a hook made before its Job (hooks {hooks!r}, weight {mine} vs {weight})")
        elif hooks:
            out.append(f"{name}: a service's policy must not be a hook")
        # In.
        got_in = {_rule_key(r.get("from"), r.get("ports")) for r in policy["spec"].get("ingress", [])}
        want_in = set()
        for who in ALLOWED_IN.get(comp, set()):
            port = [{"port": ports_of[comp], "protocol": "TCP"}]
            if who == "api":
                if not api_labels:
                    continue
                sel = {k: v for k, v in api_labels.items()}
                want_in.add(_rule_key([{"podSelector": {"matchLabels": sel}}], port))
            else:
                want_in.add(_rule_key(np[who]["from"], port))
        if got_in != want_in:
            out.append(f"{name}: lets in {sorted(got_in)}, want {sorted(want_in)}")
        # Out.
        got_out = [_rule_key(r.get("to"), r.get("ports")) for r in policy["spec"].get("egress", [])]
        want_out = [_rule_key(np["dns"]["to"], [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])]
        for backend in sorted(BACKENDS[comp]):
            want_out.append(_rule_key(np[backend]["to"], [{"port": p, "protocol": "TCP"} for p in _backend_ports(backend, values)]))
        if values["otlpEndpoint"] and not is_job:
            ports = np["otlp"]["ports"] or [_otlp_port(values["otlpEndpoint"])]
            want_out.append(_rule_key(np["otlp"]["to"], [{"port": p, "protocol": "TCP"} for p in ports]))
        if comp == "api":
            for target in ("edge", "persist"):
                labels_t = next((t["metadata"]["labels"] for c, _, t in pods if c == target), None)
                if labels_t:
                    want_out.append(_rule_key([{"podSelector": {"matchLabels": labels_t}}], [{"port": ports_of[target], "protocol": "TCP"}]))
        want_out += [_rule_key(r.get("to"), r.get("ports")) for r in np["extraEgress"]]
        if sorted(got_out) != sorted(want_out):
            out.append(f"{name}: lets out {sorted(got_out)}, want {sorted(want_out)}")
    for name, policy in policies.items():
        if policy not in deny and not any(_selects(policy["spec"]["podSelector"], t["metadata"]["labels"]) for _, _, t in pods):
            out.append(f"NetworkPolicy/{name}: selects no pod of the release")
    return out
