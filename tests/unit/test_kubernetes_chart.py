"""The Helm chart (charts/shoal) and the Dockerfile, checked without a
Kubernetes cluster: the chart is linted and rendered by Helm's own engine
(helm-python-sdk: Helm's Go SDK as a library), every object it makes is
checked against Kubernetes' JSON schemas (kubernetes-validate), and the
commands it gives the containers are parsed by shoal's own command line."""

from __future__ import annotations

import base64
import pathlib
import re
import shlex
from typing import Any

import pytest
import yaml

from shoal.cli.main import build_parser

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "shoal"
KUBERNETES = "1.30.0"  # an old-enough version: the chart uses nothing newer


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name="demo", namespace="science")
    objects = []
    for path, text in manifests.items():
        if path.endswith(".yaml"):
            objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str, component: str | None = None
            ) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and (
        component is None or o["metadata"]["labels"].get("app.kubernetes.io/component") == component)]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


def test_the_chart_lints_clean() -> None:
    result = helm.lint(str(CHART), strict=True)
    assert result["errors"] == []
    assert not [m for m in result["messages"] if m["severity"] > 1], result["messages"]


@pytest.mark.parametrize("values", [
    {},
    {"worker": {"replicas": 10, "threads": 4}, "scheduler": {"idleTimeout": "1h",
                                                              "service": {"type": "LoadBalancer"}}},
    {"token": {"existingSecret": "team-token"}, "imagePullSecrets": [{"name": "registry"}]},
])
def test_every_object_is_valid_kubernetes(values: dict[str, Any]) -> None:
    objects = render(values)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_scheduler_deployment_and_service() -> None:
    objects = render()
    (deployment,) = by_kind(objects, "Deployment", "scheduler")
    (service,) = by_kind(objects, "Service", "scheduler")
    assert deployment["spec"]["replicas"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    c = container(deployment)
    (port,) = c["ports"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert service["spec"]["ports"][0]["port"] == port["containerPort"] == 8786
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["tcpSocket"]["port"] == port["name"]
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    args = build_parser().parse_args(c["args"])  # shoal's command line accepts them
    assert (args.command, args.host, args.port) == ("scheduler", "0.0.0.0", "8786")


def test_workers_find_the_scheduler_service_and_scale_by_replicas() -> None:
    objects = render({"worker": {"replicas": 7, "threads": 3, "memoryLimit": "6GiB"}})
    (deployment,) = by_kind(objects, "Deployment", "worker")
    (service,) = by_kind(objects, "Service", "scheduler")
    assert deployment["spec"]["replicas"] == 7
    c = container(deployment)
    args = build_parser().parse_args([a.replace("$(POD_NAME)", "pod-1") for a in c["args"]])
    assert args.command == "worker"
    assert args.scheduler == f"tcp://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert (args.nthreads, args.memory_limit, args.name) == (3, "6GiB", "pod-1")
    assert "POD_NAME" in {e["name"] for e in c["env"]}
    (port,) = c["ports"]
    assert args.worker_port == str(port["containerPort"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["tcpSocket"]["port"] == port["name"]
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]


def _token_env(c: dict[str, Any]) -> dict[str, Any]:
    (env,) = [e for e in c["env"] if e["name"] == "SHOAL_TOKEN"]
    return env["valueFrom"]["secretKeyRef"]


def test_the_token_comes_from_a_secret_never_a_command_line() -> None:
    token = "a-token-given-as-a-value-0123456789"
    objects = render({"token": {"value": token}})
    (secret,) = by_kind(objects, "Secret")
    assert base64.b64decode(secret["data"]["token"]).decode() == token
    for deployment in by_kind(objects, "Deployment"):
        c = container(deployment)
        assert _token_env(c) == {"name": secret["metadata"]["name"], "key": "token"}
        assert not any(token in arg for arg in c["args"])


def test_a_generated_token_is_long_and_random_and_an_existing_secret_is_used_as_is() -> None:
    first, second = (base64.b64decode(by_kind(render(), "Secret")[0]["data"]["token"])
                     for _ in range(2))
    assert len(first) >= 32 and first != second
    objects = render({"token": {"existingSecret": "team-token"}})
    assert by_kind(objects, "Secret") == []
    for deployment in by_kind(objects, "Deployment"):
        assert _token_env(container(deployment))["name"] == "team-token"


@pytest.mark.parametrize("values", [
    {"worker": {"replicas": -1}},
    {"worker": {"threads": "four"}},
    {"scheduler": {"service": {"type": "Ingress"}}},
])
def test_the_values_schema_refuses_nonsense(values: dict[str, Any]) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError):
        chart.render(values, name="demo", namespace="science")


def test_the_dockerfile_builds_what_the_chart_runs() -> None:
    """Without docker here: every file the Dockerfile copies exists, it
    installs the package, and its entry point is what the chart's
    arguments follow (``python -m shoal`` + ``scheduler ...``/``worker ...``)."""
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    copies = [shlex.split(line)[1:-1] for line in lines if line.startswith("COPY")]
    assert copies and all((ROOT / src).exists() for srcs in copies for src in srcs)
    assert any(re.match(r"RUN pip install \.", line) for line in lines)
    assert 'ENTRYPOINT ["python", "-m", "shoal"]' in lines
    assert any(line.startswith("USER ") and "root" not in line for line in lines)
    cmd = next(line for line in lines if line.startswith("CMD "))
    assert build_parser().parse_args(yaml.safe_load(cmd[4:])).command == "scheduler"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
