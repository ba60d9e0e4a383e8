"""Helpers of the deployment tests: chart rendering, schema validation, the CLI's subcommands.

Everything here is offline: helm-python-sdk renders the chart in-process (Helm's Go library,
no helm binary, no cluster), kubernetes-validate ships the Kubernetes JSON schemas, and the
KubeRay/Strimzi schemas are vendored in ``schemas/``.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "helm" / "vigil"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
DOCKERFILE = REPO / "docker" / "Dockerfile"
COMPOSE = REPO / "infra" / "compose.yaml"
KUBE_VERSION = "1.30"
RELEASE, NAMESPACE = "vigil", "vigil"

# The CLI as documented (DESIGN/issue 10); services/cli.py, once it exists, is the authority.
DOCUMENTED_SUBCOMMANDS = frozenset(
    {"up", "demo", "ingest", "score-worker", "api", "dashboard", "train", "train-normal", "eval", "bench"}
)

# Custom resources and the vendored schema that validates each.
CR_SCHEMAS = {
    ("ray.io/v1", "RayService"): "ray.io_v1_rayservice.json",
    ("ray.io/v1", "RayJob"): "ray.io_v1_rayjob.json",
    ("kafka.strimzi.io/v1beta2", "Kafka"): "kafka.strimzi.io_v1beta2_kafka.json",
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"): "kafka.strimzi.io_v1beta2_kafkanodepool.json",
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): "kafka.strimzi.io_v1beta2_kafkatopic.json",
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate mapping keys (Kubernetes' decoder does too)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden by design
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_all(text: str) -> list[Any]:
    return [d for d in yaml.load_all(text, Loader=_UniqueKeyLoader) if d is not None]


def load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_UniqueKeyLoader)


@dataclass(frozen=True)
class Rendered:
    label: str
    docs: tuple[dict, ...]

    def of_kind(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        for d in self.of_kind(kind):
            if d["metadata"].get("name") == name:
                return d
        raise KeyError(f"{kind}/{name} not rendered ({self.label})")


def helm():
    return pytest.importorskip("helm_python", reason="pip install helm-python-sdk (the offline Helm renderer)")


@cache
def _chart():
    return helm().Chart.load(str(CHART))


def render_chart(values: dict | None = None) -> dict[str, str]:
    """Render with Helm semantics (chart defaults deep-merged with ``values``, schema enforced)."""
    return _chart().render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)


def render_docs(values: dict | None, label: str) -> Rendered:
    docs: list[dict] = []
    for template, text in sorted(render_chart(values).items()):
        for doc in load_yaml_all(text):
            assert isinstance(doc, dict), f"{template}: a manifest that is not a mapping"
            docs.append(doc)
    return Rendered(label, tuple(docs))


def gpu_values() -> dict:
    return load_yaml((CHART / "values-gpu.yaml").read_text())


# Everything off by default switched on, plus a second camera group fed from a Secret.
FULL_VALUES: dict = {
    "kafka": {"strimzi": {"enabled": True, "nodePool": {"storageClass": "fast-ssd"}}},
    "training": {"runNow": True},
    "components": {
        "dashboard": {"autoscaling": {"enabled": True}, "pdb": {"enabled": True, "maxUnavailable": 1}},
        "notify": {"enabled": True, "config": {"notify": {
            "channels": [{"kind": "webhook", "name": "soc", "url": "https://soc.example/hooks/vigil"},
                         {"kind": "mqtt", "name": "vms", "host": "mqtt.example", "topic_prefix": "site1/vigil"}],
            "rules": [{"name": "high", "channels": ["soc", "vms"], "min_severity": "high",
                       "quiet_hours": "23:00-05:00", "timezone": "Europe/Berlin"}]}}},
        "ingest": {
            "groups": {
                "lobby": {"replicas": 1, "configSecret": {"name": "vigil-cameras-lobby", "key": "cameras.yaml"}},
                "parking": {"config": {"cameras": [
                    {"id": "parking-1", "source": {"type": "synthetic", "scene": "parking_lot", "seed": 1}},
                    {"id": "parking-2", "source": {"type": "synthetic", "scene": "parking_lot", "seed": 2}},
                ]}},
            }
        },
    },
}


def value_sets() -> dict[str, dict]:
    return {"default": {}, "gpu": gpu_values(), "full": FULL_VALUES}


@cache
def rendered(label: str) -> Rendered:
    return render_docs(value_sets()[label], label)


@cache
def cr_schema(api_version: str, kind: str) -> dict:
    return json.loads((SCHEMAS / CR_SCHEMAS[(api_version, kind)]).read_text())


def validate_cr(doc: dict) -> None:
    """Validate a KubeRay/Strimzi resource against its vendored schema (raises ValidationError)."""
    import jsonschema

    schema = cr_schema(doc["apiVersion"], doc["kind"])
    jsonschema.Draft7Validator(schema).validate(doc)


def validate_core(doc: dict) -> None:
    """Strict validation of a core Kubernetes object (unknown fields are errors)."""
    kv = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate")
    kv.validate(doc, KUBE_VERSION, strict=True)


def cr_pod_templates(doc: dict) -> list[tuple[str, dict]]:
    """(where, PodTemplateSpec) of every Ray pod a KubeRay resource declares."""
    spec = doc["spec"]
    cluster = spec.get("rayClusterConfig") or spec.get("rayClusterSpec")
    if not cluster:
        return []
    found = [("headGroupSpec", cluster["headGroupSpec"]["template"])]
    for group in cluster.get("workerGroupSpecs", []):
        found.append((f"workerGroupSpecs[{group['groupName']}]", group["template"]))
    if "submitterPodTemplate" in spec:
        found.append(("submitterPodTemplate", spec["submitterPodTemplate"]))
    return found


# ---------------------------------------------------------------- the CLI


def _subcommands_from_source(source: str) -> set[str]:
    """Subcommand names from argparse, typer or click code, read without importing it."""
    tree = ast.parse(source)
    names: set[str] = set()

    def const_str(node: ast.AST | None) -> str | None:
        return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr = node.func.attr
            if attr == "add_parser" and node.args and const_str(node.args[0]):
                names.add(const_str(node.args[0]))
            elif attr in {"command", "add_command", "add_typer"}:
                for kw in node.keywords:
                    if kw.arg == "name" and const_str(kw.value):
                        names.add(const_str(kw.value))
                if attr == "command" and node.args and const_str(node.args[0]):
                    names.add(const_str(node.args[0]))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                # @app.command() / @cli.command without an explicit name: typer/click derive it.
                target = dec.func if isinstance(dec, ast.Call) else dec
                if isinstance(target, ast.Attribute) and target.attr == "command":
                    explicit = isinstance(dec, ast.Call) and (
                        (dec.args and const_str(dec.args[0])) or any(k.arg == "name" for k in dec.keywords)
                    )
                    if not explicit:
                        names.add(node.name.replace("_", "-"))
    return names


@cache
def cli_subcommands() -> frozenset[str]:
    cli = REPO / "services" / "cli.py"
    if cli.is_file():
        parsed = _subcommands_from_source(cli.read_text())
        if parsed:
            return frozenset(parsed)
    return DOCUMENTED_SUBCOMMANDS


def check_cli_flags(argv: list[str]) -> None:
    """Options passed to a subcommand exist in services/cli.py (typer derives --a-b from a_b)."""
    cli = REPO / "services" / "cli.py"
    if not cli.is_file():
        return
    source = cli.read_text()
    for word in argv:
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            # "--flag", a "--on/--off" pair, or typer's --a-b from a parameter a_b
            assert re.search(rf'["/]{re.escape(flag)}["/]', source) or re.search(
                rf"\b{flag[2:].replace('-', '_')}\s*:", source), (
                f"{flag}: no such option in services/cli.py")


# ---------------------------------------------------------------- settings


def settings_model():
    return pytest.importorskip("vigil.config", reason="the vigil package is not installed").Settings


def check_vigil_env_name(name: str) -> None:
    """VIGIL_<FIELD> or VIGIL_<SECTION>__<KEY> must name a real field of shared/config.py."""
    if name in {"VIGIL_CONFIG"}:
        return
    assert name.startswith("VIGIL_"), name
    parts = name[len("VIGIL_"):].lower().split("__")
    model = settings_model()
    for i, part in enumerate(parts):
        fields = getattr(model, "model_fields", None)
        assert fields is not None and part in fields, (
            f"{name}: {'.'.join(parts[: i + 1])} is not a setting in shared/config.py"
        )
        annotation = fields[part].annotation
        model = annotation if isinstance(annotation, type) else None


def pinned_ray_version() -> str:
    lock = (REPO / "docker" / "requirements.lock.txt").read_text()
    m = re.search(r"^ray==([\w.]+)$", lock, re.M)
    assert m, "docker/requirements.lock.txt pins no ray version"
    return m.group(1)
