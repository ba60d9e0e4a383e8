"""The Helm chart renders, and every manifest it renders is valid.

Rendered offline for three value sets (chart defaults, values-gpu.yaml, everything switched
on); core kinds are validated strictly against the Kubernetes 1.30 schemas, KubeRay and
Strimzi resources against the vendored CRD schemas, and the Ray pods inside them as core
PodTemplates. Cross-references (selectors, HPA targets, settings keys, CLI subcommands,
the Serve import path) are checked against the repository itself.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import sys
from pathlib import Path

import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_helpers import (  # noqa: E402
    CHART,
    CR_SCHEMAS,
    REPO,
    check_cli_flags,
    check_vigil_env_name,
    cli_subcommands,
    cr_pod_templates,
    helm,
    load_yaml,
    pinned_ray_version,
    render_chart,
    render_docs,
    rendered,
    validate_core,
    validate_cr,
)

LABELS = ["default", "gpu", "full"]
SERVE_IMPORT_PATH = "services.scoring.serve_app:app"
SERVE_DEPLOYMENTS = {"Detect", "Encode", "Score", "Ingress"}  # documented; serve_app.py wins when present


def _all_docs(label: str) -> list[dict]:
    """Rendered documents plus the RayJob manifest the training CronJob creates from a ConfigMap."""
    docs = list(rendered(label).docs)
    for cm in rendered(label).of_kind("ConfigMap"):
        if "rayjob.yaml" in cm.get("data", {}):
            docs.append(load_yaml(cm["data"]["rayjob.yaml"]))
    return docs


def _containers(pod_spec: dict) -> list[dict]:
    return list(pod_spec.get("initContainers", [])) + list(pod_spec["containers"])


def _pod_specs(label: str) -> list[tuple[str, dict]]:
    """(where, pod spec) of every pod the release can start, Ray pods included."""
    specs = []
    for doc in _all_docs(label):
        kind, name = doc["kind"], doc["metadata"].get("name") or doc["metadata"].get("generateName")
        if kind in {"Deployment", "StatefulSet"}:
            specs.append((f"{kind}/{name}", doc["spec"]["template"]["spec"]))
        elif kind == "CronJob":
            specs.append((f"{kind}/{name}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif kind in {"RayService", "RayJob"}:
            for where, tpl in cr_pod_templates(doc):
                specs.append((f"{kind}/{name} {where}", tpl["spec"]))
    return specs


# ---------------------------------------------------------------- rendering and schemas


@pytest.mark.parametrize("label", LABELS)
def test_chart_renders_expected_workloads(label):
    r = rendered(label)
    kinds = {d["kind"] for d in r.docs}
    for kind in ("Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                 "NetworkPolicy", "RayService", "CronJob"):
        assert kind in kinds, f"{label}: no {kind} rendered"
    deployments = {d["metadata"]["name"] for d in r.of_kind("Deployment")}
    assert {"vigil-api", "vigil-dashboard", "vigil-scoring"} <= deployments
    assert any(n.startswith("vigil-ingest-") for n in deployments), "no ingest Deployment per camera group"
    assert ("vigil-notify" in deployments) == (label == "full"), "notify renders only once switched on"
    if label == "full":
        assert {"Kafka", "KafkaNodePool", "KafkaTopic", "RayJob"} <= kinds
        assert {"vigil-ingest-demo", "vigil-ingest-lobby", "vigil-ingest-parking"} <= deployments


@pytest.mark.parametrize("label", LABELS)
def test_every_manifest_is_valid(label):
    """Core kinds: Kubernetes 1.30 schemas, strict. Custom resources: the vendored CRD schemas."""
    errors = []
    for doc in _all_docs(label):
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name') or doc['metadata'].get('generateName')}"
        key = (doc.get("apiVersion"), doc.get("kind"))
        try:
            if key in CR_SCHEMAS:
                validate_cr(doc)
                for part, tpl in cr_pod_templates(doc):
                    validate_core({"apiVersion": "v1", "kind": "PodTemplate",
                                   "metadata": {"name": "ray-pod"}, "template": tpl})
            else:
                validate_core(doc)
        except Exception as exc:  # collect them all, then fail once with the list
            errors.append(f"{where}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    assert not errors, f"{label}: invalid manifests:\n" + "\n".join(errors)


@pytest.mark.parametrize("label", LABELS)
def test_names_unique_and_namespaced_right(label):
    seen = set()
    for doc in rendered(label).docs:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key not in seen, f"{label}: {key} rendered twice"
        seen.add(key)
        assert len(doc["metadata"]["name"]) <= 63


def test_helm_lint_is_clean():
    h = helm()
    for values in ({}, load_yaml((CHART / "values-gpu.yaml").read_text())):
        report = h.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, problems


# ---------------------------------------------------------------- the checks can fail


def test_validators_reject_bad_manifests():
    """Guard against a validator that silently accepts anything."""
    deployment = copy.deepcopy(rendered("default").get("Deployment", "vigil-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(Exception):
        validate_core(deployment)
    rayservice = copy.deepcopy(rendered("default").of_kind("RayService")[0])
    rayservice["spec"]["serveConfig"] = "v1 field, gone"
    with pytest.raises(jsonschema.ValidationError):
        validate_cr(rayservice)
    rayservice = copy.deepcopy(rendered("default").of_kind("RayService")[0])
    rayservice["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_cr(rayservice)
    topic = copy.deepcopy(rendered("full").of_kind("KafkaTopic")[0])
    del topic["metadata"]["labels"]["strimzi.io/cluster"]
    with pytest.raises(jsonschema.ValidationError):
        validate_cr(topic)


def test_values_schema_refuses_unknown_and_wrong_keys():
    h = helm()
    for bad in ({"bogus": 1}, {"components": {"api": {"replicas": "two"}}},
                {"image": {"variant": "rocm"}}, {"podSecurityContext": {"runAsNonRoot": False}}):
        with pytest.raises(h.HelmError):
            render_chart(bad)


def test_scoring_consumers_never_exceed_partitions():
    h = helm()
    with pytest.raises(h.HelmError, match="partitions"):
        render_chart({"components": {"scoring": {"autoscaling": {"maxReplicas": 13}}}})
    with pytest.raises(h.HelmError, match="partitions"):
        render_chart({"kafka": {"topics": {"segments": {"partitions": 2}}}})


def test_external_kafka_requires_bootstrap():
    with pytest.raises(helm().HelmError, match="bootstrapServers"):
        render_chart({"kafka": {"bootstrapServers": ""}})


# ---------------------------------------------------------------- cross-references


@pytest.mark.parametrize("label", LABELS)
def test_selectors_and_targets_resolve(label):
    r = rendered(label)
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in r.of_kind("Deployment")]
    ray_pod_labels = [tpl["metadata"]["labels"] for d in _all_docs(label) if d["kind"] in {"RayService", "RayJob"}
                      for _, tpl in cr_pod_templates(d)]

    def matches(selector: dict, labels: list[dict]) -> bool:
        return any(all(lbl.get(k) == v for k, v in selector.items()) for lbl in labels)

    for dep in r.of_kind("Deployment"):
        sel = dep["spec"]["selector"]["matchLabels"]
        assert all(dep["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
        others = [d for d in r.of_kind("Deployment") if d is not dep]
        assert not matches(sel, [d["spec"]["template"]["metadata"]["labels"] for d in others]), (
            f"selector of {dep['metadata']['name']} also selects another Deployment's pods")
    for svc in r.of_kind("Service"):
        assert matches(svc["spec"]["selector"], pod_labels), f"Service {svc['metadata']['name']} selects no pod"
    for pdb in r.of_kind("PodDisruptionBudget"):
        assert matches(pdb["spec"]["selector"]["matchLabels"], pod_labels), pdb["metadata"]["name"]
    for np in r.of_kind("NetworkPolicy"):
        assert matches(np["spec"]["podSelector"]["matchLabels"], pod_labels + ray_pod_labels), np["metadata"]["name"]
    deployments = {d["metadata"]["name"] for d in r.of_kind("Deployment")}
    for hpa in r.of_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    config_maps = {d["metadata"]["name"] for d in r.of_kind("ConfigMap")}
    for where, spec in _pod_specs(label):
        for vol in spec.get("volumes", []):
            if "configMap" in vol:
                assert vol["configMap"]["name"] in config_maps, f"{where}: ConfigMap {vol['configMap']['name']}"


@pytest.mark.parametrize("label", LABELS)
def test_pods_are_hardened_and_sized(label):
    for where, spec in _pod_specs(label):
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["runAsUser"] != 0, where
        for c in _containers(spec):
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, f"{where} {c['name']}"
            assert c["resources"].get("requests"), f"{where} {c['name']}: no resource requests"
            assert c["resources"].get("limits", {}).get("memory"), f"{where} {c['name']}: no memory limit"
            image = c["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{where}: unpinned {image}"


@pytest.mark.parametrize("label", LABELS)
def test_serving_components_have_probes(label):
    for dep in rendered(label).of_kind("Deployment"):
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        if c.get("ports"):
            assert "livenessProbe" in c and "readinessProbe" in c, dep["metadata"]["name"]
            port_names = {p["name"] for p in c["ports"]}
            for probe in (c["livenessProbe"], c["readinessProbe"]):
                handler = probe.get("httpGet") or probe.get("tcpSocket")
                assert handler and handler["port"] in port_names | {p["containerPort"] for p in c["ports"]}


def _probe_paths(label: str) -> dict[str, set[str]]:
    """Component name -> the HTTP paths its probes call (a kubelet sends no credentials)."""
    out: dict[str, set[str]] = {}
    for dep in rendered(label).of_kind("Deployment"):
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
            if "httpGet" in c.get(kind, {}):
                out.setdefault(dep["metadata"]["labels"]["app.kubernetes.io/component"], set()).add(
                    c[kind]["httpGet"]["path"])
    return out


@pytest.mark.parametrize("label", LABELS)
def test_every_http_probe_answers_without_credentials_on_the_real_app(label, tmp_path):
    """The probe paths of the API and the score worker, called as a kubelet calls them: on the
    API's real app (database and object store reachable) and the worker's real metrics server."""
    import httpx
    from fastapi.testclient import TestClient

    from services.api.main import create_app
    from vigil.config import Settings
    from vigil.db import make_engine, migrate
    from vigil.metrics import serve_metrics

    paths = _probe_paths(label)
    assert {"api", "scoring"} <= set(paths), paths
    s = Settings(state_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 'p.db'}"})
    migrate(s.database_url)
    engine = make_engine(s.database_url)
    with TestClient(create_app(s, engine=engine, store=None)) as api:
        for path in paths.pop("api"):
            r = api.get(path)  # no X-API-Key
            assert r.status_code == 200, (path, r.status_code, r.text)
            assert set(r.json()) <= {"status", "database", "object_store"}  # status only: no host, no version
    engine.dispose()
    port = serve_metrics(0)
    for path in paths.pop("scoring"):
        assert httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code == 200, path
    # the dashboard's is Streamlit's own health route (exercised in tests/integration/test_dashboard_browser.py)
    assert set(paths) <= {"dashboard"} and paths.get("dashboard", {"/_stcore/health"}) == {"/_stcore/health"}, paths


@pytest.mark.parametrize("label", LABELS)
def test_secrets_are_referenced_never_inlined(label):
    assert not rendered(label).of_kind("Secret"), "the chart must reference existing Secrets, not create them"
    for where, spec in _pod_specs(label):
        for c in _containers(spec):
            for env in c.get("env", []):
                if any(s in env["name"] for s in ("SECRET", "KEY", "PASSWORD", "DATABASE__URL")):
                    assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], f"{where}: {env['name']}"


@pytest.mark.parametrize("label", LABELS)
def test_commands_are_vigil_subcommands(label):
    """Container args and the RayJob entrypoint name subcommands of services/cli.py."""
    subcommands = cli_subcommands()
    used = []
    for dep in rendered(label).of_kind("Deployment"):
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        used.append((f"Deployment/{dep['metadata']['name']}", c["args"][0]))
        check_cli_flags(c["args"])
    for cron in rendered(label).of_kind("CronJob"):
        for c in cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]:
            if "args" in c:  # the training schedule's runs kubectl, not vigil
                used.append((f"CronJob/{cron['metadata']['name']}", c["args"][0]))
                check_cli_flags(c["args"])
    for doc in _all_docs(label):
        if doc["kind"] == "RayJob":
            argv = doc["spec"]["entrypoint"].split()
            assert argv[0] == "vigil", doc["spec"]["entrypoint"]
            used.append(("RayJob", argv[1]))
    missing = [f"{where}: `vigil {cmd}`" for where, cmd in used if cmd not in subcommands]
    assert not missing, f"not subcommands of the vigil CLI {sorted(subcommands)}: {missing}"


@pytest.mark.parametrize("label", LABELS)
def test_settings_files_and_env_match_shared_config(label, tmp_path):
    """Every settings file the chart writes loads with shared/config.py (unknown keys are errors)."""
    from vigil.config import load_settings

    for cm in rendered(label).of_kind("ConfigMap"):
        if "config.yaml" not in cm.get("data", {}):
            continue
        path = tmp_path / f"{cm['metadata']['name']}.yaml"
        path.write_text(cm["data"]["config.yaml"])
        settings = load_settings(path)
        assert settings.kafka.bootstrap_servers, cm["metadata"]["name"]
        assert settings.s3.endpoint, cm["metadata"]["name"]
    for where, spec in _pod_specs(label):
        for c in _containers(spec):
            for env in c.get("env", []):
                if env["name"].startswith("VIGIL_"):
                    check_vigil_env_name(env["name"])


def test_env_name_check_can_fail():
    with pytest.raises(AssertionError):
        check_vigil_env_name("VIGIL_KAFKA__BOOTSTRAP")
    with pytest.raises(AssertionError):
        check_vigil_env_name("VIGIL_S4__ENDPOINT")


# ---------------------------------------------------------------- Ray


def _serve_app_source() -> tuple[set[str], bool] | None:
    """(deployment classes, defines a module-level `app`) of services/scoring/serve_app.py, if present."""
    module = REPO / "services" / "scoring" / "serve_app.py"
    if not module.is_file():
        return None
    tree = ast.parse(module.read_text())
    has_app = any(
        (isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "app" for t in n.targets))
        or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.target.id == "app")
        or (isinstance(n, (ast.FunctionDef, ast.ImportFrom)) and "app" in (
            [n.name] if isinstance(n, ast.FunctionDef) else [a.asname or a.name for a in n.names]))
        for n in tree.body
    )
    deployments = {
        n.name for n in tree.body if isinstance(n, ast.ClassDef)
        and any("deployment" in ast.unparse(d) for d in n.decorator_list)
    }
    return deployments, has_app


@pytest.mark.parametrize("label", LABELS)
def test_rayservice_serve_config(label):
    (rs,) = rendered(label).of_kind("RayService")
    serve = load_yaml(rs["spec"]["serveConfigV2"])
    (app,) = serve["applications"]
    assert app["import_path"] == SERVE_IMPORT_PATH
    names = {d["name"] for d in app.get("deployments", [])}
    source = _serve_app_source()
    known = source[0] if source else SERVE_DEPLOYMENTS
    assert names <= known, f"serveConfig names Serve deployments {sorted(names - known)} that the app lacks"
    assert rs["spec"]["rayClusterConfig"]["rayVersion"] == pinned_ray_version()


def test_serve_app_exposes_the_import_path():
    """KubeRay imports services.scoring.serve_app:app; the module must define `app`."""
    source = _serve_app_source()
    if source is None:
        pytest.skip("services/scoring/serve_app.py does not exist yet")
    assert source[1], (
        "services/scoring/serve_app.py defines no module-level `app` (a bound Application, or an "
        "application builder `def app(args: dict)`), which the RayService import path "
        f"{SERVE_IMPORT_PATH} needs")


def test_gpu_values_put_encoding_on_gpus():
    (rs,) = rendered("gpu").of_kind("RayService")
    serve = load_yaml(rs["spec"]["serveConfigV2"])
    encode = next(d for d in serve["applications"][0]["deployments"] if d["name"] == "Encode")
    assert encode["ray_actor_options"]["num_gpus"] > 0
    workers = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    gpu_containers = [c for w in workers for c in w["template"]["spec"]["containers"]
                      if "nvidia.com/gpu" in c["resources"].get("limits", {})]
    assert gpu_containers and all(c["image"].endswith("-cuda") for c in gpu_containers)
    jobs = [d for d in _all_docs("gpu") if d["kind"] == "RayJob"]
    assert jobs and all(
        any("nvidia.com/gpu" in c["resources"].get("limits", {})
            for w in j["spec"]["rayClusterSpec"]["workerGroupSpecs"] for c in w["template"]["spec"]["containers"])
        for j in jobs)
    # the CPU chart must not ask for GPUs
    for where, spec in _pod_specs("default"):
        for c in _containers(spec):
            assert "nvidia.com/gpu" not in c["resources"].get("limits", {}), where


def _cronjob(r, component: str) -> dict:
    (cron,) = [c for c in r.of_kind("CronJob") if c["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    return cron


def test_training_schedule_creates_rayjobs():
    r = rendered("default")
    cron = _cronjob(r, "training-schedule")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"][:2] == ["kubectl", "create"]
    cm = r.get("ConfigMap", pod["volumes"][0]["configMap"]["name"])
    job = load_yaml(cm["data"]["rayjob.yaml"])
    assert job["kind"] == "RayJob" and job["metadata"]["generateName"]
    role = r.get("Role", pod["serviceAccountName"])
    assert any("rayjobs" in rule["resources"] and "create" in rule["verbs"] for rule in role["rules"])
    binding = r.get("RoleBinding", pod["serviceAccountName"])
    assert binding["subjects"][0]["name"] == pod["serviceAccountName"]


def test_strimzi_topics_match_settings():
    r = rendered("full")
    (kafka,) = r.of_kind("Kafka")
    cluster = kafka["metadata"]["name"]
    topics = {t["spec"]["topicName"]: t for t in r.of_kind("KafkaTopic")}
    from vigil.contracts import DLQ_TOPIC, EVENTS_TOPIC, SEGMENTS_TOPIC

    assert set(topics) == {SEGMENTS_TOPIC, EVENTS_TOPIC, DLQ_TOPIC}
    assert all(t["metadata"]["labels"]["strimzi.io/cluster"] == cluster for t in topics.values())
    settings = load_yaml(r.get("ConfigMap", "vigil-config")["data"]["config.yaml"])
    assert settings["kafka"]["bootstrap_servers"] == f"{cluster}-kafka-bootstrap:9092"
    from vigil.bus import topic_specs
    from vigil.config import KafkaSettings

    # what ensure_topics would create from the pods' settings is what Strimzi creates
    made = {t.name: (t.num_partitions, t.replication_factor) for t in topic_specs(KafkaSettings(**settings["kafka"]))}
    assert made == {n: (t["spec"]["partitions"], t["spec"]["replicas"]) for n, t in topics.items()}
    assert made[DLQ_TOPIC] != made[SEGMENTS_TOPIC] and made[SEGMENTS_TOPIC][1] == 3


def test_ingest_group_from_secret_has_no_configmap():
    r = rendered("full")
    lobby = r.get("Deployment", "vigil-ingest-lobby")
    vol = next(v for v in lobby["spec"]["template"]["spec"]["volumes"] if v["name"] == "config")
    assert vol["secret"]["secretName"] == "vigil-cameras-lobby"
    assert "vigil-ingest-lobby-config" not in {d["metadata"]["name"] for d in r.of_kind("ConfigMap")}
    parking = load_yaml(r.get("ConfigMap", "vigil-ingest-parking-config")["data"]["config.yaml"])
    assert [c["id"] for c in parking["cameras"]] == ["parking-1", "parking-2"]
    assert lobby["spec"]["strategy"]["type"] == "Recreate"


def test_render_is_deterministic():
    assert render_docs({}, "again").docs == rendered("default").docs


def test_dashboard_api_url_names_the_api_service():
    r = rendered("default")
    (c,) = r.get("Deployment", "vigil-dashboard")["spec"]["template"]["spec"]["containers"]
    url = c["args"][c["args"].index("--api-url") + 1]
    host, port = url.removeprefix("http://").split(":")
    svc = r.get("Service", host)
    assert int(port) in {p["port"] for p in svc["spec"]["ports"]}


def test_autoscaling_ray_head_keeps_kuberay_service_account():
    (rs,) = rendered("default").of_kind("RayService")
    head = rs["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    assert "serviceAccountName" not in head, "KubeRay's autoscaler sidecar needs the SA KubeRay creates"
    worker = rs["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    assert worker["automountServiceAccountToken"] is False


def test_camera_group_can_be_paused():
    r = render_docs({"components": {"ingest": {"groups": {"demo": {"replicas": 0}}}}}, "paused")
    assert r.get("Deployment", "vigil-ingest-demo")["spec"]["replicas"] == 0


def test_each_ingest_group_reconciles_its_own_shard_of_the_cameras_added_through_the_api():
    def env_of(dep: dict) -> dict[str, str]:
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value") for e in c.get("env", [])}

    r = rendered("full")
    shards = {d["metadata"]["name"]: env_of(d).get("VIGIL_INGEST__SHARD") for d in r.of_kind("Deployment")
              if d["metadata"]["labels"].get("app.kubernetes.io/component") == "ingest"}
    assert shards == {"vigil-ingest-demo": "0/3", "vigil-ingest-lobby": "1/3", "vigil-ingest-parking": "2/3"}
    others = [d for d in r.of_kind("Deployment") if d["metadata"]["labels"].get("app.kubernetes.io/component") != "ingest"]
    assert others and all("VIGIL_INGEST__SHARD" not in env_of(d) for d in others)
    from vigil.config import IngestSettings

    for value in shards.values():
        IngestSettings(shard=value)  # each is a shard the settings accept


def test_the_public_s3_endpoint_reaches_every_pods_settings_and_signs_for_it():
    """Evidence URLs signed for the name browsers use, not the in-cluster `minio:9000`."""
    from vigil.config import Settings
    from vigil.objectstore import ObjectStore

    r = render_docs({"s3": {"publicEndpoint": "clips.example.org"}}, "public-s3")
    api = load_yaml(r.get("ConfigMap", "vigil-api-config")["data"]["config.yaml"])
    s3 = Settings(**{"s3": api["s3"]}).s3
    assert (s3.public_endpoint, s3.public_secure) == ("clips.example.org", True)
    url = ObjectStore(s3).presigned_get("evidence/gate/clip.mp4")
    assert url.startswith("https://clips.example.org/vigil/evidence/gate/clip.mp4?") and "X-Amz-Signature=" in url
    default = load_yaml(rendered("default").get("ConfigMap", "vigil-api-config")["data"]["config.yaml"])
    assert ObjectStore(Settings(**{"s3": default["s3"]}).s3).presigned_get("k").startswith("http://minio.minio.svc:9000/")


def test_retention_runs_vigil_cleanup_nightly_with_the_store_and_database(tmp_path):
    from vigil.config import load_settings

    r = rendered("default")
    cron = _cronjob(r, "retention")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"  # a slow pass is never run twice at once
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["cleanup"] and "/vigil-api:" in c["image"]
    env = {e["name"]: e for e in c["env"]}
    assert {"VIGIL_S3__ACCESS_KEY", "VIGIL_S3__SECRET_KEY", "VIGIL_DATABASE__URL"} <= set(env)
    cm = r.get("ConfigMap", next(v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v))
    (tmp_path / "c.yaml").write_text(cm["data"]["config.yaml"])
    s = load_settings(tmp_path / "c.yaml")
    assert s.s3.endpoint and s.retention.segment_days >= 1
    off = render_docs({"retention": {"schedule": {"enabled": False}}}, "no-retention")
    assert [c["metadata"]["labels"]["app.kubernetes.io/component"] for c in off.of_kind("CronJob")] == [
        "training-schedule"]


def test_only_the_api_and_ingest_get_the_source_seal_key_and_ingest_reads_the_cameras_table():
    got = {}
    for dep in rendered("full").of_kind("Deployment"):
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in c.get("env", [])}
        got[dep["metadata"]["labels"]["app.kubernetes.io/component"]] = set(env)
        if "VIGIL_SECURITY__SOURCE_KEY" in env:
            ref = env["VIGIL_SECURITY__SOURCE_KEY"]["valueFrom"]["secretKeyRef"]
            assert (ref["name"], ref["key"]) == ("vigil-api", "source-key")
    assert {n for n, e in got.items() if "VIGIL_SECURITY__SOURCE_KEY" in e} == {"api", "ingest"}
    assert "VIGIL_DATABASE__URL" in got["ingest"]  # it follows the cameras table in SQL


def _secret_value(env_name: str) -> str:
    """A stand-in a setting accepts, for an env var the chart fills from a Secret."""
    from cryptography.fernet import Fernet

    return {"VIGIL_DATABASE__URL": "postgresql+psycopg://vigil:pw@pg:5432/vigil",
            "VIGIL_SECURITY__SOURCE_KEY": Fernet.generate_key().decode()}.get(env_name, "stand-in-secret")


def _workloads(label: str, tmp_path: Path) -> list[tuple[str, list[str], dict[str, str]]]:
    """(where, vigil argv, environment) of every container the release runs `vigil` in: Deployments,
    CronJobs and the RayJobs' entrypoints, with the settings file their config volume mounts."""
    r = rendered(label)
    out = []

    def env_of(c: dict, where: str, config_map: str | None) -> dict[str, str]:
        env = {}
        for e in c.get("env", []):
            env[e["name"]] = e["value"] if "value" in e else _secret_value(e["name"])
        if config_map:
            path = tmp_path / f"{where.replace('/', '_')}.yaml"
            path.write_text(r.get("ConfigMap", config_map)["data"]["config.yaml"])
            env["VIGIL_CONFIG"] = str(path)
        else:
            env.pop("VIGIL_CONFIG", None)  # mounted from a Secret the operator creates
        return env

    pods = [(f"Deployment/{d['metadata']['name']}", d["spec"]["template"]["spec"]) for d in r.of_kind("Deployment")]
    pods += [(f"CronJob/{c['metadata']['name']}", c["spec"]["jobTemplate"]["spec"]["template"]["spec"])
             for c in r.of_kind("CronJob")]
    for where, spec in pods:
        cm = next((v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v), None)
        for c in spec["containers"]:
            if "args" in c:
                out.append((where, [str(a) for a in c["args"]], env_of(c, where, cm)))
    for doc in _all_docs(label):
        if doc["kind"] == "RayJob":
            argv = doc["spec"]["entrypoint"].split()
            assert argv[0] == "vigil", doc["spec"]["entrypoint"]
            head = doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
            cm = next((v["configMap"]["name"] for v in head.get("volumes", []) if "configMap" in v), None)
            out.append((f"RayJob/{doc['metadata'].get('name') or doc['metadata'].get('generateName')}", argv[1:],
                        env_of(head["containers"][0], "rayjob", cm)))
    return out


@pytest.mark.parametrize("label", LABELS)
def test_every_rendered_command_is_accepted_by_the_real_cli_with_its_settings(label, tmp_path, monkeypatch):
    """`vigil --dry-run ARGS` with each workload's environment and settings file: the real CLI
    parses the arguments and the settings (unknown options, keys or values fail) and exits 0."""
    from typer.testing import CliRunner

    from services.cli import app

    for k in [k for k in os.environ if k.startswith("VIGIL_")]:
        monkeypatch.delenv(k)  # the pods' environment alone (the tests' development setting included)
    seen = set()
    for where, argv, env in _workloads(label, tmp_path):
        r = CliRunner().invoke(app, ["--dry-run", *argv], env=env)
        assert r.exit_code == 0 and "dry run: `vigil " in r.output, (where, argv, r.output[-1500:])
        seen.add(argv[0])
    assert {"api", "dashboard", "score-worker", "ingest", "evidence", "cleanup", "train"} <= seen, seen


def test_the_dry_run_check_can_fail(tmp_path):
    from typer.testing import CliRunner

    from services.cli import app

    r = CliRunner().invoke(app, ["--dry-run", "score-worker", "--no-such-flag"])
    assert r.exit_code == 2
    bad = tmp_path / "c.yaml"
    bad.write_text("kafka: {partitions: 0}\n")
    r = CliRunner().invoke(app, ["--dry-run", "ingest", "--config", str(bad)])
    assert r.exit_code == 2 and "kafka.partitions" in r.output


@pytest.mark.parametrize("label", LABELS)
def test_every_secret_key_the_chart_references_is_documented_in_the_runbook(label):
    runbook = (REPO / "docs" / "runbook.md").read_text()
    refs = set()
    for _, spec in _pod_specs(label):
        for c in _containers(spec):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    assert refs
    undocumented = [(n, k) for n, k in sorted(refs)
                    if not re.search(rf"secret generic {re.escape(n)}\b[^\n]*(\\\n[^\n]*)*--from-literal={re.escape(k)}=",
                                     runbook)]
    assert not undocumented, f"create-secret commands missing from docs/runbook.md: {undocumented}"


@pytest.mark.parametrize("label", LABELS)
def test_the_rayservice_owns_the_serve_app_and_workers_only_attach(label, tmp_path):
    """One owner of the Serve application: the RayService's serveConfigV2 declares the app the
    score workers' settings name, and every score-worker runs with --no-deploy (a worker that
    deployed would overwrite the RayService's config)."""
    from vigil.config import load_settings

    r = rendered(label)
    (rs,) = r.of_kind("RayService")
    apps = {a["name"] for a in load_yaml(rs["spec"]["serveConfigV2"])["applications"]}
    workers = [d for d in r.of_kind("Deployment") if d["spec"]["template"]["spec"]["containers"][0]["args"][0]
               == "score-worker"]
    assert workers
    for dep in workers:
        spec = dep["spec"]["template"]["spec"]
        assert "--no-deploy" in spec["containers"][0]["args"], dep["metadata"]["name"]
        cm = next(v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v)
        (tmp_path / "w.yaml").write_text(r.get("ConfigMap", cm)["data"]["config.yaml"])
        assert load_settings(tmp_path / "w.yaml").serve.app_name in apps
