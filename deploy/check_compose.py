"""Checks compose.yaml where no Docker engine runs: it parses, every service has an
image or a build, every file it mounts exists, the Prometheus config scrapes the
service's port, and the Grafana dashboard is JSON whose panels all have queries."""

import json
import pathlib
import sys

import yaml

root = pathlib.Path(__file__).resolve().parent.parent
compose = yaml.safe_load((root / "compose.yaml").read_text())
services = compose["services"]
problems = []
for name, service in services.items():
    if "image" not in service and "build" not in service:
        problems.append(f"{name}: neither image nor build")
    for volume in service.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("./") and not (root / source).exists():
            problems.append(f"{name}: mounts {source}, which does not exist")
    for dependency in service.get("depends_on", []):
        if dependency not in services:
            problems.append(f"{name}: depends on unknown service {dependency}")

prometheus = yaml.safe_load((root / "deploy/prometheus/prometheus.yml").read_text())
targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
if "order-service:8004" not in targets or "8004:8004" not in services["order-service"]["ports"]:
    problems.append(f"prometheus scrapes {targets}, not the service's API port 8004")

dashboard = json.loads((root / "deploy/grafana/dashboards/order-service.json").read_text())
for panel in dashboard["panels"]:
    if not all(t.get("expr") for t in panel.get("targets", [])) or not panel.get("targets"):
        problems.append(f"panel {panel.get('title')!r} has no query")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"compose.yaml: {len(services)} services, {len(dashboard['panels'])} dashboard panels: ok")
