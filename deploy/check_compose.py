"""Checks compose.yaml where no Docker engine runs: it parses, every service has an
image or a build, every file it mounts exists, the Prometheus config scrapes the
service's port, and the Grafana dashboard is JSON whose panels all have queries.
And what it exposes: by default only the service's REST and gRPC ports are
published, every published port is bound to 127.0.0.1 unless told otherwise,
Restate and the simulator publish nothing, authorization is on, and every Restate
node signs its requests with the key the service checks."""

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

def published(service):
    """(host address, host port, container port) of each published port."""
    out = []
    for port in service.get("ports", []):
        parts = str(port).rsplit(":", 2)
        if len(parts) != 3:
            out.append((None, parts[0], parts[-1]))
        else:
            out.append(tuple(parts))
    return out


for name, service in services.items():
    for host, host_port, _ in published(service):
        if host not in ("127.0.0.1", "${ORDER_PUBLISH_ADDR:-127.0.0.1}"):
            problems.append(f"{name}: publishes {host_port} on all interfaces")
    if (name.startswith("restate") or name == "simulator") and service.get("ports"):
        problems.append(f"{name}: publishes {service['ports']}: internal only")
    if name.startswith("restate"):
        env = service.get("environment", {})
        if env.get("RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE") != "/secrets/request-identity.pem":
            problems.append(f"{name}: does not sign its requests to the service")
    if name.startswith("order-service"):
        start = " ".join(service.get("entrypoint", []))
        for needed in ("ORDER_INTERNAL_KEY", "ORDER_RESTATE_IDENTITY_KEYS", "ORDER_AUTH_JWT_SECRET"):
            if needed not in start:
                problems.append(f"{name}: starts without {needed}")
        if "ORDER_RESTATE_ALLOW_UNSIGNED" in str(service):
            problems.append(f"{name}: allows unsigned Restate requests")
default_ports = sorted(
    container
    for service in services.values()
    if not service.get("profiles")
    for _, _, container in published(service)
)
if default_ports != ["8004", "9004"]:
    problems.append(f"the default profile publishes {default_ports}, not only 8004 and 9004")

prometheus = yaml.safe_load((root / "deploy/prometheus/prometheus.yml").read_text())
targets = [t for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]]
if "order-service:8004" not in targets or ("${ORDER_PUBLISH_ADDR:-127.0.0.1}", "8004", "8004") not in published(services["order-service"]):
    problems.append(f"prometheus scrapes {targets}, not the service's API port 8004")

dashboard = json.loads((root / "deploy/grafana/dashboards/order-service.json").read_text())
for panel in dashboard["panels"]:
    if not all(t.get("expr") for t in panel.get("targets", [])) or not panel.get("targets"):
        problems.append(f"panel {panel.get('title')!r} has no query")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"compose.yaml: {len(services)} services, {len(dashboard['panels'])} dashboard panels: ok")
