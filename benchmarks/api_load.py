"""Load test of the events API on PostgreSQL: N events, C concurrent clients, p95 per query.

    .venv/bin/python benchmarks/api_load.py --events 1000000 --clients 50 --duration 20

Steps: a fresh PostgreSQL database (dropped at the end unless --keep), the schema by Alembic,
N synthetic events bulk-loaded with COPY (indexes dropped during the load and recreated from
the migration's own definitions), ANALYZE; the API served by uvicorn in its own processes;
then `wrk` (Debian package) drives each query kind for --duration seconds with --clients
connections and reports latency percentiles from its own histogram (a Lua `done` hook).
Writes benchmarks/api_load.json with the numbers, the machine and the git commit.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx

REPO = Path(__file__).resolve().parents[1]
ADMIN_KEY = "bench-admin-key-" + uuid.uuid4().hex[:8]

DESCRIPTIONS = [
    "fighting between people", "a person running", "riding a bicycle", "skateboarding", "explosion",
    "arson, setting fire to a building or a car", "burglary, breaking into a house or a shop", "a car driving on the walkway",
    "assault, attacking a person", "police arresting a person", "traffic accidents involving vehicles, pedestrians or cyclists",
    "shoplifting", "vandalism, damaging property", "a person falling down", "robbery, stealing from a person",
]
SEVERITIES = ["low", "medium", "high", "critical"]

WRK_LUA = r"""
local paths = {}
local f = io.open(os.getenv("BENCH_PATHS"), "r")
for line in f:lines() do table.insert(paths, line) end
f:close()
local key = os.getenv("BENCH_KEY")
local think = tonumber(os.getenv("BENCH_THINK_MS") or "0")
local counter = 0
local statuses = {}
function setup(thread) thread:set("id", counter); counter = counter + 1 end
function init(args) idx = math.random(#paths); non2xx = 0 end
function request()
  idx = idx % #paths + 1
  return wrk.format("GET", paths[idx], {["X-API-Key"] = key})
end
function delay()
  -- think time: a client waits this long (+-50 %) after each answer before its next request
  if think > 0 then return math.floor(think * (0.5 + math.random())) end
  return 0
end
function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end
function done(summary, latency, requests)
  local out = io.open(os.getenv("BENCH_OUT"), "w")
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "errors_connect": %d, "errors_read": %d, "errors_write": %d, ' ..
    '"errors_status": %d, "errors_timeout": %d, "p50_ms": %.2f, "p90_ms": %.2f, "p95_ms": %.2f, ' ..
    '"p99_ms": %.2f, "max_ms": %.2f, "mean_ms": %.2f}',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(95) / 1000, latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000))
  out:close()
end
"""


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, cwd=REPO).stdout.strip()


def create_db(admin_url: str) -> str:
    import psycopg

    name = f"vigil_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + "/" + name


def drop_db(admin_url: str, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def load_events(url: str, n: int, cameras: int, days: int, seed: int) -> dict:
    """COPY n events; the events indexes are dropped for the load and recreated after."""
    import psycopg

    rng = random.Random(seed)
    end = datetime(2026, 11, 20, tzinfo=UTC)
    span = days * 86400
    t0 = time.perf_counter()
    with psycopg.connect(url) as c:
        idx = c.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events' AND indexname <> 'events_pkey'"
        ).fetchall()
        for name, _ in idx:
            c.execute(f'DROP INDEX "{name}"')
        cols = ("id, camera_id, peak_score, severity, status, model_version, thumbnail_key, clip_key, t_start, t_end, "
                "first_seq, last_seq, top_descriptions, segment_ids, created_at, updated_at, peak_s_sem, peak_s_pred")
        with c.cursor().copy(f"COPY events ({cols}) FROM STDIN") as cp:
            for i in range(n):
                cam = f"cam-{rng.randrange(cameras):03d}"
                seq = i * 7 + rng.randrange(5)
                ts = end - timedelta(seconds=rng.random() * span)
                dur = 4 * rng.randint(1, 8)
                peak = min(1.0, 0.5 + rng.betavariate(1.2, 4) * 0.5)
                sev = SEVERITIES[min(3, int((peak - 0.5) / 0.125))]
                status = "open" if rng.random() < 0.01 else "closed"
                descs = rng.sample(DESCRIPTIONS, 3)
                probs = sorted((rng.random() for _ in range(3)), reverse=True)
                top = json.dumps([{"text": d, "prob": round(p, 3), "abnormal": True} for d, p in zip(descs, probs)])
                segs = json.dumps([f"{cam}:{seq + k}" for k in range(dur // 4)])
                eid = f"{cam}:{seq:09d}"
                pre = f"evidence/{cam}/{eid.replace(':', '_')}/"
                cp.write_row((eid, cam, peak, sev, status, "vigil-micro@1", pre + "thumb.jpg", pre + "clip.mp4", ts,
                              ts + timedelta(seconds=dur), seq, seq + dur // 4 - 1, top, segs, ts, ts,
                              round(peak * rng.uniform(0.8, 1.0), 4), round(peak * rng.uniform(0.3, 1.0), 4)))
        loaded = time.perf_counter() - t0
        for name, ddl in idx:
            c.execute(ddl)
        c.commit()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("VACUUM ANALYZE events")
        size = c.execute("SELECT pg_size_pretty(pg_total_relation_size('events'))").fetchone()[0]
    return {"copy_s": round(loaded, 1), "total_s": round(time.perf_counter() - t0, 1), "table_size": size,
            "indexes": sorted(name for name, _ in idx)}


def start_api(url: str, port: int, workers: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "VIGIL_DATABASE__URL": url, "VIGIL_API__ADMIN_KEY": ADMIN_KEY,
           "VIGIL_S3__ENDPOINT": "127.0.0.1:9", "VIGIL_LOG_LEVEL": "WARNING"}
    argv = [sys.executable, "-m", "uvicorn", "--factory", "services.api.main:app_factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(workers), "--no-access-log", "--log-level", "warning"]
    proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=log_path.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API exited during start-up; see {log_path}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("API did not start within 60 s")


def query_mix(base: str, cameras: int, seed: int) -> dict[str, list[str]]:
    """Request paths per query kind; cursors and event ids are taken from live responses."""
    rng = random.Random(seed)
    end = datetime(2026, 11, 20, tzinfo=UTC)
    h = {"X-API-Key": ADMIN_KEY}

    def p(params: dict) -> str:
        return "/events?" + urlencode(params, doseq=True)

    def window() -> dict:
        a = end - timedelta(days=rng.uniform(1, 89))
        return {"since": a.isoformat(), "until": (a + timedelta(hours=rng.choice([1, 6, 24, 72]))).isoformat()}

    kinds: dict[str, list[str]] = {
        "latest": [p({"limit": 50})],
        "camera": [p({"camera": f"cam-{rng.randrange(cameras):03d}", "limit": 50}) for _ in range(200)],
        "camera_time_range": [p({"camera": f"cam-{rng.randrange(cameras):03d}", **window()}) for _ in range(200)],
        "time_range": [p(window()) for _ in range(200)],
        "score_range": [p({"min_score": round(rng.uniform(0.6, 0.95), 2), "max_score": 1.0}) for _ in range(100)],
        "severity_status": [p({"severity": rng.choice(SEVERITIES), "status": rng.choice(["open", "closed"])})
                            for _ in range(100)],
        "sort_by_score": [p({"sort": "peak_score", "order": "desc", **window()}) for _ in range(100)],
        "text_search": [p({"q": rng.choice(["bicycle", "fight", "explosion", "running", "arson", "skate"])})
                        for _ in range(50)],
        "text_search_camera": [p({"q": rng.choice(["bicycle", "fight", "explosion"]),
                                  "camera": f"cam-{rng.randrange(cameras):03d}"}) for _ in range(100)],
    }
    # deep pagination: follow next_cursor 20 pages down from a few starting points
    deep = []
    with httpx.Client(base_url=base, headers=h, timeout=30) as c:
        for start in [{}, {"sort": "peak_score"}, {"camera": "cam-001"}]:
            cur = None
            for _ in range(20):
                params = {**start, "limit": 50, **({"cursor": cur} if cur else {})}
                body = c.get("/events", params=params).json()
                deep.append(p(params))
                cur = body["next_cursor"]
                if not cur:
                    break
        ids = [e["id"] for e in c.get("/events", params={"limit": 200}).json()["items"]]
    kinds["cursor_pages"] = deep
    kinds["event_detail"] = [f"/events/{i}" for i in ids]
    kinds["mixed"] = [x for k, v in kinds.items() for x in rng.sample(v, min(len(v), 40))]
    rng.shuffle(kinds["mixed"])
    return kinds


def _cpu_seconds(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


def _tree(pid: int) -> list[int]:
    import psutil

    try:
        p = psutil.Process(pid)
        return [pid] + [c.pid for c in p.children(recursive=True)]
    except psutil.Error:
        return []


def _postgres_pids() -> list[int]:
    import psutil

    return [p.pid for p in psutil.process_iter(["name", "username"]) if (p.info["name"] or "").startswith("postgres")]


def run_wrk(base: str, paths: list[str], clients: int, threads: int, duration: int, tmp: Path,
            think_ms: int = 0, api_pid: int | None = None) -> dict:
    pf, out, lua = tmp / "paths.txt", tmp / "out.json", tmp / "bench.lua"
    pf.write_text("\n".join(paths) + "\n")
    lua.write_text(WRK_LUA)
    env = {**os.environ, "BENCH_PATHS": str(pf), "BENCH_OUT": str(out), "BENCH_KEY": ADMIN_KEY,
           "BENCH_THINK_MS": str(think_ms)}
    api_pids = _tree(api_pid) if api_pid else []
    pg_pids = _postgres_pids()
    cpu0 = (_cpu_seconds(api_pids), _cpu_seconds(pg_pids))
    load0 = os.getloadavg()[0]
    subprocess.run(["wrk", "-t", str(threads), "-c", str(clients), "-d", f"{duration}s", "--timeout", "10s",
                    "-s", str(lua), base], env=env, check=True, capture_output=True, text=True)
    cpu1 = (_cpu_seconds(api_pids), _cpu_seconds(_postgres_pids()))
    r = json.loads(out.read_text())
    r["rps"] = round(r["requests"] / (r["duration_us"] / 1e6), 1)
    n = max(1, r["requests"])
    r["api_cpu_ms_per_request"] = round((cpu1[0] - cpu0[0]) * 1000 / n, 2)
    r["postgres_cpu_ms_per_request"] = round((cpu1[1] - cpu0[1]) * 1000 / n, 2)  # all postgres processes
    r["loadavg_1m_before_after"] = [round(load0, 1), round(os.getloadavg()[0], 1)]
    r["think_ms"] = think_ms
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--cameras", type=int, default=200)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--duration", type=int, default=20, help="seconds per query kind")
    ap.add_argument("--think-ms", default="0",
                    help="comma-separated think times per client (0 = back-to-back, the saturation case)")
    ap.add_argument("--kinds", default="", help="comma-separated subset of query kinds")
    ap.add_argument("--pg", default=os.environ.get("VIGIL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
                    help="maintenance database URL; a fresh database is created beside it")
    ap.add_argument("--url", help="use this existing, already loaded database instead")
    ap.add_argument("--keep", action="store_true", help="keep the database (print its URL)")
    ap.add_argument("--load-only", action="store_true", help="create and load the database, keep it, stop")
    ap.add_argument("--port", type=int, default=18765)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "api_load.json"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: apt-get install -y wrk")

    from vigil.db import migrate

    created = a.url is None
    if a.load_only:
        a.keep = True
    url = a.url or create_db(a.pg)
    result: dict = {}
    proc = None
    try:
        if created:
            migrate(url)
            print(f"loading {a.events:,} events into {url} ...", flush=True)
            result["load"] = load_events(url, a.events, a.cameras, a.days, a.seed)
            print(result["load"], flush=True)
            if a.load_only:
                Path(a.out).with_suffix(".load.json").write_text(json.dumps({"url": url, **result["load"]}) + "\n")
                print(f"kept database {url}")
                return
        if not created:
            import psycopg

            with psycopg.connect(url) as c:
                result["database"] = {
                    "rows": c.execute("SELECT count(*) FROM events").fetchone()[0],
                    "table_size": c.execute("SELECT pg_size_pretty(pg_total_relation_size('events'))").fetchone()[0],
                    "indexes": [r[0] for r in c.execute(
                        "SELECT indexname FROM pg_indexes WHERE tablename = 'events' ORDER BY 1").fetchall()],
                }
        with tempfile.TemporaryDirectory() as tmpd:
            tmp = Path(tmpd)
            proc = start_api(url, a.port, a.workers, tmp / "api.log")
            base = f"http://127.0.0.1:{a.port}"
            kinds = query_mix(base, a.cameras, a.seed)
            wanted = [k for k in a.kinds.split(",") if k] or list(kinds)
            runs = {}
            for think in [int(t) for t in a.think_ms.split(",")]:
                for k in wanted:
                    run_wrk(base, kinds[k], a.clients, a.threads, 3, tmp, think)  # warm-up
                    r = run_wrk(base, kinds[k], a.clients, a.threads, a.duration, tmp, think, proc.pid)
                    r["distinct_requests"] = len(set(kinds[k]))
                    runs[f"{k}@think{think}ms"] = r
                    print(f"{k:20s} think {think:4d} ms  p50 {r['p50_ms']:7.1f}  p95 {r['p95_ms']:7.1f}  "
                          f"p99 {r['p99_ms']:7.1f} ms  {r['rps']:7.1f} req/s  api cpu {r['api_cpu_ms_per_request']:.2f} "
                          f"ms/req  pg cpu {r['postgres_cpu_ms_per_request']:.2f} ms/req  "
                          f"load {r['loadavg_1m_before_after']}  non-2xx {r['errors_status']}", flush=True)
    finally:
        if proc is not None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        if created and not a.keep:
            drop_db(a.pg, url)
        elif created:
            print(f"kept database {url}")
    worst = max(r["p95_ms"] for r in runs.values())
    worst_by_think = {}
    for name, r in runs.items():
        t = name.rsplit("@", 1)[1]
        worst_by_think[t] = max(worst_by_think.get(t, 0), r["p95_ms"])
    result.update({
        "what": "GET /events (filters, sort, cursor pages) and GET /events/{id} against the running API",
        "tool": "wrk (Debian), closed loop: each of --clients connections sends its next request when the answer "
                "has arrived (+ think time when set); latency percentiles from wrk's histogram",
        "git_commit": sh("git", "rev-parse", "HEAD"),
        "git_dirty": bool(sh("git", "status", "--porcelain", "--", "services/api", "shared/models.py", "shared/migrations",
                                "shared/db.py", "benchmarks/api_load.py")),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "note": "API, PostgreSQL and wrk share these CPUs"},
        "postgres": sh("psql", a.pg.replace("postgresql+psycopg", "postgresql"), "-Atc", "show server_version"),
        "events": a.events, "cameras": a.cameras, "clients": a.clients, "wrk_threads": a.threads,
        "api_workers": a.workers, "duration_s_per_kind": a.duration,
        "target": {"p95_ms": 100},
        "runs": runs,
        "worst_p95_ms": worst,
        "worst_p95_ms_by_think_time": worst_by_think,
        "meets_target": worst <= 100 and all(r["errors_status"] == 0 for r in runs.values()),
    })
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"worst p95 {worst:.1f} ms -> {a.out}")


if __name__ == "__main__":
    main()
