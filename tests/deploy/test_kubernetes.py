"""deploy/k8s: every manifest valid against Kubernetes' schemas, and the pods right.

No cluster runs here: kubernetes-validate --strict checks each manifest the
kustomization lists, and the whole `kubectl kustomize` output (generated
ConfigMap and Secret included); the tests read that output.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.deploy.conftest import (
    K8S,
    TEARDOWN_SECONDS,
    image_environment,
    image_uid,
    load_yaml,
    load_yaml_documents,
    resolved_config,
    run,
    server_env_overrides,
    server_setting,
    venv_tool,
)

KINDS = {
    ("Namespace", "keel"),
    ("ConfigMap", "keel-config"),
    ("Secret", "keel-secrets"),
    ("Deployment", "keel"),
    ("Deployment", "keel-worker"),
    ("Job", "keel-migrate"),
    ("Service", "keel"),
    ("Ingress", "keel"),
    ("PodDisruptionBudget", "keel"),
    ("HorizontalPodAutoscaler", "keel"),
}
SECRET_EXAMPLE = K8S / "secret.env.example"

Manifest = dict[str, Any]


def kustomization() -> dict[str, Any]:
    found: dict[str, Any] = load_yaml(K8S / "kustomization.yaml")
    return found


def listed_resources() -> list[Path]:
    return [K8S / name for name in kustomization()["resources"]]


def env_file(path: Path) -> dict[str, str]:
    """A kustomize `envs` file: KEY=VALUE lines, `#` comments."""
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


@pytest.fixture(scope="module")
def rendered_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`kubectl kustomize` of a copy of deploy/k8s whose secret.env is the example."""
    work = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, work, ignore=shutil.ignore_patterns("secret.env"))
    shutil.copy(SECRET_EXAMPLE, work / "secret.env")
    result = run(venv_tool("kubectl"), "kustomize", str(work))
    assert result.returncode == 0, result.stderr
    output = work.parent / "rendered.yaml"
    output.write_text(result.stdout)
    return output


@pytest.fixture(scope="module")
def rendered(rendered_file: Path) -> list[Manifest]:
    return load_yaml_documents(rendered_file.read_text())


def find(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    """The manifest of that kind whose name is `name` (or `name-<hash>` when generated)."""
    for manifest in manifests:
        actual = manifest["metadata"]["name"]
        if manifest["kind"] == kind and (actual == name or actual.rsplit("-", 1)[0] == name):
            return manifest
    raise AssertionError(f"no {kind} {name}")


def pod_spec(workload: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def workloads(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in {"Deployment", "Job"}]


def container_env(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}


def effective_env(container: dict[str, Any]) -> dict[str, str]:
    """What Keel reads in the pod: image ENV, then the container's, then the Secret's."""
    return {**image_environment(), **container_env(container), **env_file(SECRET_EXAMPLE)}


def probe_port(container: dict[str, Any], probe: dict[str, Any]) -> int:
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def test_kustomization_names_only_files_that_exist() -> None:
    names = [*kustomization()["resources"]]
    for generator in kustomization().get("configMapGenerator", []):
        names += generator.get("files", [])
    missing = [name for name in names if not (K8S / name).is_file()]
    assert not missing, missing
    assert SECRET_EXAMPLE.is_file()


def test_every_listed_manifest_passes_strict_validation() -> None:
    files = [str(path) for path in listed_resources()]
    result = run(venv_tool("kubernetes-validate"), "--strict", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in files:
        assert f"{path} passed" in result.stdout + result.stderr, path


def test_the_kustomize_output_passes_strict_validation(
    rendered_file: Path, rendered: list[Manifest]
) -> None:
    result = run(venv_tool("kubernetes-validate"), "--strict", str(rendered_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (result.stdout + result.stderr).count(" passed ") == len(rendered)


def test_strict_validation_catches_a_misspelt_field(tmp_path: Path) -> None:
    broken = tmp_path / "deployment.yaml"
    text = (K8S / "deployment.yaml").read_text()
    broken.write_text(text.replace("revisionHistoryLimit:", "revisionHistoryLimt:"))
    result = run(venv_tool("kubernetes-validate"), "--strict", str(broken))
    assert result.returncode != 0
    assert "revisionHistoryLimt" in result.stdout + result.stderr


def test_each_kind_is_there(rendered: list[Manifest]) -> None:
    present = {(m["kind"], m["metadata"]["name"]) for m in rendered}
    for kind, name in KINDS:
        find(rendered, kind, name)
    assert len(present) == len(KINDS), present
    assert all(m["metadata"].get("namespace", "keel") == "keel" for m in rendered)


def test_config_and_secret_are_generated_so_a_change_rolls_the_pods(
    rendered: list[Manifest],
) -> None:
    config = find(rendered, "ConfigMap", "keel-config")
    secret = find(rendered, "Secret", "keel-secrets")
    assert config["metadata"]["name"] != "keel-config"  # a content hash was appended
    assert secret["metadata"]["name"] != "keel-secrets"
    assert set(secret["data"]) == set(env_file(SECRET_EXAMPLE))
    for workload in workloads(rendered):
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        assert volumes["config"]["configMap"]["name"] == config["metadata"]["name"]
        for container in pod_spec(workload)["containers"]:
            refs = [e["secretRef"]["name"] for e in container["envFrom"]]
            assert refs == [secret["metadata"]["name"]]


@pytest.mark.parametrize(
    ("name", "role", "port_key"),
    [("keel", "serve", ("server", "port")), ("keel-worker", "worker", ("worker", "port"))],
)
def test_pods_probe_startup_readiness_and_liveness_on_keels_port(
    rendered: list[Manifest], name: str, role: str, port_key: tuple[str, str]
) -> None:
    (container,) = pod_spec(find(rendered, "Deployment", name))["containers"]
    assert container["command"] == ["python", "run.py", role]
    section, key = port_key
    port = int(resolved_config(K8S / "config.toml", effective_env(container))[section][key])
    paths = {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in paths.items():
        assert container[probe]["httpGet"]["path"] == path, probe
        assert probe_port(container, container[probe]) == port, probe
    # Startup (migrations, warm-up) may take minutes; liveness must not cut it short.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


@pytest.mark.parametrize("name", ["keel", "keel-worker"])
def test_grace_period_covers_prestop_drain_delay_and_shutdown_timeout(
    rendered: list[Manifest], name: str
) -> None:
    spec = pod_spec(find(rendered, "Deployment", name))
    (container,) = spec["containers"]
    with (K8S / "config.toml").open("rb") as file:
        k8s_server = tomllib.load(file).get("server", {})
    env_server = server_env_overrides(container_env(container))
    drain_delay = server_setting("drain_delay", k8s_server, env_server)
    shutdown_timeout = server_setting("shutdown_timeout", k8s_server, env_server)
    pre_stop = container.get("lifecycle", {}).get("preStop")
    sleep = 0.0
    if pre_stop is not None:
        assert pre_stop["exec"]["command"][0] == "sleep"
        sleep = float(pre_stop["exec"]["command"][1])
    if name == "keel":
        # Endpoints are updated while it sleeps, before Keel starts draining.
        assert sleep >= 1
    needed = sleep + drain_delay + shutdown_timeout + TEARDOWN_SECONDS
    assert spec["terminationGracePeriodSeconds"] >= needed, (
        f"{name}: {spec['terminationGracePeriodSeconds']}s < preStop {sleep} + drain_delay "
        f"{drain_delay} + shutdown_timeout {shutdown_timeout} + teardown {TEARDOWN_SECONDS}"
    )


def test_every_pod_runs_unprivileged_on_a_read_only_root(rendered: list[Manifest]) -> None:
    uid = image_uid()
    for workload in workloads(rendered):
        spec = pod_spec(workload)
        name = workload["metadata"]["name"]
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["runAsUser"] == uid, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name


def test_writable_only_where_keel_writes_and_config_mounted_read_only(
    rendered: list[Manifest],
) -> None:
    for workload in workloads(rendered):
        spec = pod_spec(workload)
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            env = effective_env(container)
            writable = {
                m["mountPath"]: volumes[m["name"]]
                for m in container["volumeMounts"]
                if not m.get("readOnly")
            }
            assert set(writable) == {env["KEEL_SERVER__DATA_DIR"], "/tmp"}
            assert all("emptyDir" in volume for volume in writable.values())
            (config_mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
            assert config_mount["readOnly"] is True
            config_path = PurePosixPath(env["KEEL_CONFIG"])
            assert config_path.parent == PurePosixPath(config_mount["mountPath"])
            assert config_path.name == "config.toml"


def test_every_container_has_requests_and_limits(rendered: list[Manifest]) -> None:
    for workload in workloads(rendered):
        for container in pod_spec(workload)["containers"]:
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[bound]), (container["name"], bound)


def test_the_config_map_and_example_secret_make_a_valid_production_config(
    rendered: list[Manifest],
) -> None:
    for workload in workloads(rendered):
        for container in pod_spec(workload)["containers"]:
            resolved = resolved_config(K8S / "config.toml", effective_env(container))
            assert resolved["server"]["host"] == "0.0.0.0"
            assert resolved["redis"]["url"].startswith("redis://")
            assert resolved["amqp"]["url"].startswith("amqp://")
            assert all(dsn.startswith("postgresql://") for dsn in resolved["sharding"]["shards"])
            assert len(resolved["sharding"]["shards"]) == 2
            assert resolved["admin"]["token"]
            assert resolved["queue"]["consume"] is False


def test_serve_deployment_scales_and_rolls_without_losing_capacity(
    rendered: list[Manifest],
) -> None:
    deployment = find(rendered, "Deployment", "keel")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = find(rendered, "Service", "keel")
    assert service["spec"]["selector"] == selector
    assert (
        find(rendered, "PodDisruptionBudget", "keel")["spec"]["selector"]["matchLabels"] == selector
    )
    hpa = find(rendered, "HorizontalPodAutoscaler", "keel")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "keel"}
    assert hpa["minReplicas"] == deployment["spec"]["replicas"] <= hpa["maxReplicas"]
    worker = find(rendered, "Deployment", "keel-worker")
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= worker_labels.items(), (
        "the Service would send traffic to workers"
    )


def test_ingress_routes_to_the_service_with_websocket_timeouts(rendered: list[Manifest]) -> None:
    ingress = find(rendered, "Ingress", "keel")
    annotations = ingress["metadata"]["annotations"]
    heartbeat = resolved_config(K8S / "config.toml", {})["websocket"]["heartbeat"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[f"nginx.ingress.kubernetes.io/{key}"]) > heartbeat
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    assert backend["name"] == "keel"
    service = find(rendered, "Service", "keel")
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
