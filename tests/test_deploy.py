"""deploy/kubernetes.yaml and deploy/compose.yaml: valid against the real schemas, and saying
what the image does (its user, port, health endpoint, settings, timings). Starting the
runtime the way the manifest says is tests/containers/test_deploy_runtime.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from bundler import api, layout

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "deploy").is_dir())
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0", "1.37.0")  # pinned: the oldest supported and the newest known
# The schema says draft-07 in a form jsonschema does not recognise: name the draft itself.
COMPOSE = jsonschema.Draft7Validator(json.loads((REPO / "tests" / "schemas" / "compose-spec.json").read_text()))


def documents(bundle: Path) -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all((bundle / "deploy" / "kubernetes.yaml").read_text())}


def test_every_golden_case_has_deploy_files():
    assert len(CASES) == len([p for p in GOLDEN.iterdir() if p.is_dir()]) >= 13


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("case", CASES)
def test_kubernetes_manifests_pass_strict_validation(case, version):
    for document in yaml.safe_load_all((GOLDEN / case / "deploy" / "kubernetes.yaml").read_text()):
        kubernetes_validate.validate(document, version, strict=True)


def test_strict_validation_can_fail():
    deployment = documents(GOLDEN / "one_model")["Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = "yes"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonRoot"] = True
    deployment["spec"]["template"]["spec"]["containers"][0]["probe"] = {}  # no such field: strict refuses it
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("case", CASES)
def test_compose_file_matches_the_compose_specification(case):
    document = yaml.safe_load((GOLDEN / case / "deploy" / "compose.yaml").read_text())
    COMPOSE.validate(document)
    document["services"][next(iter(document["services"]))]["read_only_root"] = True  # no such key
    with pytest.raises(jsonschema.ValidationError):
        COMPOSE.validate(document)


@pytest.mark.parametrize("case", CASES)
def test_the_manifest_says_what_the_image_does(case):
    bundle = GOLDEN / case
    manifest = json.loads((bundle / "bundle.json").read_text())["inputs"]
    server = manifest["server"]
    dockerfile = (bundle / "Dockerfile").read_text()
    uid = int(re.findall(r"^USER (\d+):\d+$", dockerfile, re.M)[-1])  # the serving stage's, last
    kinds = documents(bundle)
    deployment, service = kinds["Deployment"], kinds["Service"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    assert container["securityContext"] == {
        "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {}}]
    assert container["ports"] == [{"name": "http", "containerPort": server["port"]}]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/", "port": "http"}  # the runtime's health endpoint
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # init() may be slow
    assert pod["terminationGracePeriodSeconds"] > server["scoring_timeout"]  # SIGTERM drains the last request
    liveness = container["livenessProbe"]
    assert (
        liveness["periodSeconds"] * liveness["failureThreshold"] > server["scoring_timeout"]
    )  # a long run() is no death
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["BUNDLER_PORT"] == str(server["port"]) and env["BUNDLER_WORKERS"] == "auto"
    assert env["BUNDLER_SCORING_TIMEOUT"] == str(server["scoring_timeout"])
    assert set(env) <= {"BUNDLER_PORT", "BUNDLER_WORKERS", "BUNDLER_SCORING_TIMEOUT", "BUNDLER_MAX_REQUEST_BYTES"}
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    labels = deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "bundler" and service["spec"]["selector"].items() <= labels.items()
    assert kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert kinds["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    compose = yaml.safe_load((bundle / "deploy" / "compose.yaml").read_text())
    (svc,) = compose["services"].values()
    assert svc["ports"] == [f"6789:{server['port']}"] and svc["user"] == f"{uid}:{uid}" and svc["read_only"] is True
    assert svc["tmpfs"] == ["/tmp"] and svc["healthcheck"]["test"] == [
        "CMD",
        "python",
        "-m",
        "bundler_runtime.healthcheck",
    ]
    assert int(svc["stop_grace_period"].rstrip("s")) == pod["terminationGracePeriodSeconds"]


def test_the_image_is_the_pushed_one_when_there_is_a_registry():
    container = documents(GOLDEN / "push_registry")["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "myregistry.azurecr.io/diabetes:1"
    local = documents(GOLDEN / "one_model")["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert local["image"] == "diabetes:1"


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "score.py").write_text("def init():\n    pass\n\n\ndef run(raw):\n    return raw\n")
    (tmp_path / "m.bin").write_bytes(b"weights")
    monkeypatch.setenv("BUNDLER_HOME", str(tmp_path / "registry"))
    monkeypatch.chdir(tmp_path)
    api.register("m.bin", "fraud")
    return tmp_path


def save(project, deploy_table: str = "", *flags):
    (project / "bundler.toml").write_text(f'models = ["fraud"]\n[inference]\nentry_script = "score.py"\n{deploy_table}')
    return subprocess.run([sys.executable, "-m", "bundler", "save", "out", *flags], capture_output=True, text=True)


def test_deploy_settings_reach_the_manifest(project):
    table = (
        "[deploy]\nreplicas = 2\nmin_replicas = 2\nmax_replicas = 8\ntarget_cpu_utilization = 60\n"
        'cpu_request = "250m"\ncpu_limit = "1500m"\nmemory_request = "1Gi"\nmemory_limit = "2Gi"\n'
        "workers = 3\nstartup_seconds = 600\n"
    )
    assert save(project, table).returncode == 0
    kinds = documents(project / "out")
    spec = kinds["Deployment"]["spec"]
    container = spec["template"]["spec"]["containers"][0]
    assert spec["replicas"] == 2
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "1Gi"},
        "limits": {"cpu": "1500m", "memory": "2Gi"},
    }
    assert {e["name"]: e["value"] for e in container["env"]}["BUNDLER_WORKERS"] == "3"
    assert container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"] == 600
    hpa = kinds["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"], hpa["metrics"][0]["resource"]["target"]["averageUtilization"]) == (
        2,
        8,
        60,
    )
    for version in KUBERNETES_VERSIONS:
        for document in kinds.values():
            kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize(
    "table, message",
    [
        ('[deploy]\ncpu_limit = "lots"\n', 'cpu_limit must be a CPU quantity, e.g. "1" or "1500m"'),
        ('[deploy]\nmemory_request = "1 GB"\n', "memory_request must be a memory quantity"),
        ("[deploy]\nmin_replicas = 5\nmax_replicas = 2\n", "min_replicas must be from 1 to max_replicas"),
        ('[deploy]\nworkers = "many"\n', 'workers must be "auto" or a number from 1 to 64'),
        ("[deploy]\ntarget_cpu_utilization = 150\n", "a percentage"),
        ("[deploy]\nreplicas = true\n", "'replicas' must be a whole number"),
    ],
)
def test_bad_deploy_settings_are_one_line(project, table, message):
    result = save(project, table)
    assert result.returncode == 2
    assert message in result.stderr and "bundler.toml:" in result.stderr and len(result.stderr.splitlines()) == 1


def test_no_deploy_leaves_the_files_out(project):
    assert save(project, "", "--no-deploy").returncode == 0
    assert not (project / "out" / "deploy").exists()
    assert "deploy/" not in (project / "out" / ".dockerignore").read_text()
    assert api.verify(project / "out").ok
    assert save(project, "[deploy]\nenabled = false\n").returncode == 0 and not (project / "out" / "deploy").exists()
    result = subprocess.run([sys.executable, "-m", "bundler", "deploy-manifest", "out"], capture_output=True, text=True)
    assert result.returncode == 2 and "saved with --no-deploy" in result.stderr


def test_deploy_manifest_puts_another_image_in(project):
    assert save(project).returncode == 0
    digest = "myregistry.azurecr.io/fraud@sha256:" + "ab" * 32
    result = subprocess.run(
        [sys.executable, "-m", "bundler", "deploy-manifest", "out", "--image", digest], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    original = (project / "out" / "deploy" / "kubernetes.yaml").read_text()
    assert result.stdout == original.replace('"fraud:1"', json.dumps(digest))
    assert [d for d in yaml.safe_load_all(result.stdout)][0]["spec"]["template"]["spec"]["containers"][0][
        "image"
    ] == digest
    bad = subprocess.run(
        [sys.executable, "-m", "bundler", "deploy-manifest", "out", "--image", "x; rm -rf /"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "is not an image reference" in bad.stderr


def test_workers_auto_follows_the_cgroup_cpu_limit(tmp_path):
    sys.path.insert(0, str(REPO / "bundler" / "runtime"))
    try:
        from bundler_runtime.settings import from_environment, workers_for_cpu_limit
    finally:
        sys.path.pop(0)
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: 2 workers
    assert workers_for_cpu_limit(str(v2), cpus=16) == 2
    (v2 / "cpu.max").write_text("max 100000\n")  # no limit: the CPUs it may run on
    assert workers_for_cpu_limit(str(v2), cpus=6) == 6
    (v2 / "cpu.max").write_text("50000 100000\n")  # half a CPU: still one worker
    assert workers_for_cpu_limit(str(v2), cpus=16) == 1
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert workers_for_cpu_limit(str(v1), cpus=16) == 3
    assert workers_for_cpu_limit(str(tmp_path / "none"), cpus=4) == 4  # no cgroup files: the CPUs
    assert from_environment({"BUNDLER_WORKERS": "auto"}).workers == workers_for_cpu_limit()
    assert from_environment({"BUNDLER_WORKERS": "3"}).workers == 3


def test_layout_names_the_deploy_files():
    assert layout.BUNDLE.kubernetes == "deploy/kubernetes.yaml" and layout.BUNDLE.compose == "deploy/compose.yaml"


@pytest.mark.parametrize("name", ["my.model", "my_model", "1model", "a" * 70, "UPPER.Case__x", "-"])
def test_names_are_what_kubernetes_and_compose_accept(name):
    from bundler.deploy import kubernetes_name

    made = kubernetes_name(name)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", made) and len(made) <= 63, made  # DNS-1035, as a Service
    assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", made)  # a Compose project name
    assert kubernetes_name(name) == made  # the same every time


def test_a_model_name_with_dots_gives_valid_deploy_files(project):
    api.register("m.bin", "my.model_v2")
    (project / "bundler.toml").write_text('models = ["my.model_v2"]\n[inference]\nentry_script = "score.py"\n')
    result = subprocess.run([sys.executable, "-m", "bundler", "save", "out"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    kinds = documents(project / "out")
    assert {d["metadata"]["name"] for d in kinds.values()} == {"my-model-v2"}
    compose = yaml.safe_load((project / "out" / "deploy" / "compose.yaml").read_text())
    assert compose["name"] == "my-model-v2" and list(compose["services"]) == ["my-model-v2"]
    COMPOSE.validate(compose)
