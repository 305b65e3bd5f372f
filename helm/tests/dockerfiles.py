"""What can be checked of helm/docker/*.Dockerfile without a Docker engine.
Used by validate.py.

For each image the chart uses (rill-edge, rill-api, rill-persist,
rill-sequencer, rill-admin) there must be helm/docker/<name>.Dockerfile that
- is multi-stage, every base image pinned to a tag (not `latest`);
- copies from the build context only paths that exist in the repository;
- builds with `cargo build --release --locked -p <package> --bin <bin>`,
  where <package> is a workspace member and <bin> one of its binaries;
- copies that binary, and only that, from the build stage, and runs it;
- runs as a non-root user (numeric, as Kubernetes' runAsNonRoot needs);
- exposes the port the chart gives the service, and listens on it.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

IMAGES = ("edge", "api", "persist", "sequencer", "admin")


def workspace_binaries(repo: Path) -> dict[str, set[str]]:
    """package name -> its binary names, from the workspace's Cargo.toml files."""
    root = tomllib.loads((repo / "Cargo.toml").read_text())
    out: dict[str, set[str]] = {}
    for member in root["workspace"]["members"]:
        manifest = tomllib.loads((repo / member / "Cargo.toml").read_text())
        name = manifest["package"]["name"]
        bins = {b["name"] for b in manifest.get("bin", [])}
        if not bins and (repo / member / "src/main.rs").exists():
            bins = {name}
        out[name] = bins
    return out


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def check_one(repo: Path, image: str, port: int | None, binaries: dict[str, set[str]]) -> list[str]:
    path = repo / "helm/docker" / f"{image}.Dockerfile"
    where = str(path.relative_to(repo))
    if not path.exists():
        return [f"{where}: missing (the chart uses image rill-{image})"]
    out = []
    steps = instructions(path.read_text())
    froms = [args for op, args in steps if op == "FROM"]
    if len(froms) < 2:
        out.append(f"{where}: not multi-stage ({len(froms)} FROM)")
    for args in froms:
        base = args.split()[0]
        if ":" not in base.rsplit("/", 1)[-1] or base.endswith(":latest"):
            out.append(f"{where}: base image {base} is not pinned to a tag")
    stage = 0
    built: set[str] = set()
    copied: set[str] = set()
    user = expose = entry = listen = None
    for op, args in steps:
        if op == "FROM":
            stage += 1
            user = None
        elif op == "COPY":
            words = shlex.split(args)
            flags = [w for w in words if w.startswith("--")]
            sources = [w for w in words if not w.startswith("--")][:-1]
            if any(f.startswith("--from=") for f in flags):
                copied.update(Path(s).name for s in sources)
            else:
                for s in sources:
                    if not (repo / s).exists():
                        out.append(f"{where}: COPY {s}: no such path in the repository")
        elif op == "RUN":
            for m in re.finditer(r"cargo build ([^&;]*)", args):
                words = shlex.split(m.group(1))
                if "--release" not in words or "--locked" not in words:
                    out.append(f"{where}: cargo build without --release --locked")
                pkg = words[words.index("-p") + 1] if "-p" in words else None
                binary = words[words.index("--bin") + 1] if "--bin" in words else None
                if pkg not in binaries:
                    out.append(f"{where}: -p {pkg}: no such workspace package")
                elif binary not in binaries[pkg]:
                    out.append(f"{where}: --bin {binary}: not a binary of {pkg} ({sorted(binaries[pkg])})")
                else:
                    built.add(binary)
        elif op == "USER":
            user = args
        elif op == "EXPOSE":
            expose = int(args.split("/")[0])
        elif op == "ENTRYPOINT":
            entry = args
        elif op == "ENV":
            m = re.search(r"RILL_LISTEN=\S*:(\d+)", args)
            listen = int(m.group(1)) if m else listen
    if not built:
        out.append(f"{where}: builds no workspace binary")
    if copied != built:
        out.append(f"{where}: copies {sorted(copied)} from the build stage, builds {sorted(built)}")
    if entry is None or not any(f"/{b}\"" in entry for b in built):
        out.append(f"{where}: ENTRYPOINT {entry} does not run the built binary")
    if user is None or not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", user):
        out.append(f"{where}: the final stage must run as a numeric non-root USER, not {user!r}")
    if port is not None and (expose != port or listen != port):
        out.append(f"{where}: EXPOSE {expose} / RILL_LISTEN port {listen}, the chart says {port}")
    if not out:
        print(f"  ok: {where}: {froms[0].split()[0]} -> {froms[-1].split()[0]}, binary {', '.join(sorted(built))}, user {user}")
    return out


def check(repo: Path, values: dict) -> list[str]:
    binaries = workspace_binaries(repo)
    out = []
    for image in IMAGES:
        port = values[image]["port"] if image in values else None
        out += check_one(repo, image, port, binaries)
    extra = {p.name.removesuffix(".Dockerfile") for p in (repo / "helm/docker").glob("*.Dockerfile")} - set(IMAGES)
    if extra:
        out.append(f"helm/docker: Dockerfiles the chart does not use: {sorted(extra)}")
    return out
