"""The performance record: every `vigil bench` run issue 26 asks for, their summary, the README table.

    python benchmarks/performance.py run [NAME ...]   # runs (serially; ~5 min each on 2 cores)
    python benchmarks/performance.py summary          # benchmarks/performance.json + README table

Each run is a plain `vigil bench` command; its JSON (with commit, command, per-stage CPU per
segment, per-process cores, latency, memory) is kept under ``benchmarks/performance/``. The
summary takes the median of the repeated runs, and the README's table between the
``perf-table`` markers is generated from the summary, never typed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS_DIR = HERE / "performance"
SUMMARY = HERE / "performance.json"
README = HERE.parent / "README.md"

SERVED = "vigil-tiny"  # the served default detector's backbone (model.backbone)
# name -> (model, cameras, offered load): "sat" = 1.5x the bare throughput measured first in the run,
# "half" = 0.5x; the scale curve offers a fixed 240 frames/s (about 1.2x the served detector's bare
# loop here) split over 4..32 cameras ("fps=" per camera), so only the camera count changes
RUNS: dict[str, tuple[str, int, str]] = {
    **{f"served_sat_{i}": (SERVED, 8, "load=1.5") for i in (1, 2, 3)},
    "served_half": (SERVED, 8, "load=0.5"),
    "vits32_sat": ("ViT-S-32-random", 4, "load=1.5"),
    "vits32_half": ("ViT-S-32-random", 4, "load=0.5"),
    "vitb32_sat": ("ViT-B-32-random", 4, "load=1.5"),
    "vitb32_half": ("ViT-B-32-random", 4, "load=0.5"),
    **{f"scale_{n}": (SERVED, n, f"fps={240 / n:g}") for n in (4, 8, 16, 32)},
}
SECONDS = 45


def command(name: str) -> list[str]:
    model, cameras, offered = RUNS[name]
    key, value = offered.split("=")
    return [sys.executable, "-m", "services.cli", "bench", "--model", model, "--cameras", str(cameras),
            f"--{key}", value, "--seconds", str(SECONDS), "--json", str(RUNS_DIR / f"{name}.json")]


def run(names: list[str]) -> None:
    RUNS_DIR.mkdir(exist_ok=True)
    for name in names or list(RUNS):
        cmd = command(name)
        print(f"== {name}: {' '.join(cmd[2:])}", flush=True)
        subprocess.run(cmd, check=False, cwd=HERE.parent)
        out = RUNS_DIR / f"{name}.json"
        if out.exists():  # the record says how it was made
            rec = json.loads(out.read_text())
            rec["command"] = "vigil " + " ".join(cmd[3:]).replace(str(HERE.parent) + "/", "")
            out.write_text(json.dumps(rec, indent=2))


def _load(name: str) -> dict | None:
    p = RUNS_DIR / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def _row(rec: dict) -> dict:
    cost = rec.get("cpu_ms_per_segment") or {}
    T = rec["frames_per_segment"]
    return {
        "bare_fps": rec["bare_fps"], "e2e_fps": rec["e2e_fps"], "ratio": rec["ratio"],
        "latency_p95_s": rec["latency_p95_s"], "segment_compute_s": rec["segment_compute_s"],
        "latency_p95_over_compute": rec["latency_p95_over_compute"], "cameras": rec["cameras"],
        "model_cpu_ms_per_frame": round(cost.get("model_total", float("nan")) / T, 2),
        "fixed_path_cpu_ms_per_segment": cost.get("fixed_path_total"),
        "fixed_path_cpu_ms_per_frame": round(cost.get("fixed_path_total", float("nan")) / T, 2),
        "peak_rss_mb": rec.get("peak_rss_mb"), "git_commit": rec.get("git_commit"), "command": rec.get("command"),
    }


def summary() -> dict:
    out: dict = {"what": "issue 26: the served detector and two CLIP backbones through the embedded stack vs their "
                         "bare loop on this machine (2 cores, no GPU); medians where runs repeat",
                 "how": "python benchmarks/performance.py run && python benchmarks/performance.py summary"}
    sat = [r for r in (_load(f"served_sat_{i}") for i in (1, 2, 3)) if r]
    if sat:
        rows = [_row(r) for r in sat]
        med = {k: statistics.median(r[k] for r in rows) for k in ("bare_fps", "e2e_fps", "ratio", "fixed_path_cpu_ms_per_segment")}
        stages = sorted({k for r in sat for k in r["cpu_ms_per_segment"]["fixed_path"]})
        med["fixed_path_by_stage_ms"] = {k: round(statistics.median(r["cpu_ms_per_segment"]["fixed_path"].get(k, 0.0)
                                                                   for r in sat), 2) for k in stages}
        med["model_by_stage_ms"] = {k: round(statistics.median(r["cpu_ms_per_segment"]["model"][k] for r in sat), 2)
                                    for k in ("detect", "encode", "score")}
        out["served_saturation"] = {"median": med, "runs": rows}
    for key in ("served_half", "vits32_sat", "vits32_half", "vitb32_sat", "vitb32_half"):
        rec = _load(key)
        if rec:
            out[key] = _row(rec)
    scale = {n: _load(f"scale_{n}") for n in (4, 8, 16, 32)}
    out["scale"] = {str(n): {**_row(r), "cpu_ms_per_segment": r["cpu_ms_per_segment"]} for n, r in scale.items() if r}
    SUMMARY.write_text(json.dumps(out, indent=2))
    _write_table(out)
    return out


def _fmt(x: float | None, nd: int = 1) -> str:
    return "—" if x is None else f"{x:.{nd}f}"


def _write_table(s: dict) -> None:
    lines = ["| model | bare loop | end to end at 1.5× load | ratio | p95 latency at half load (× one segment's compute) "
             "| fixed path CPU per segment |", "|---|---|---|---|---|---|"]
    sat = s.get("served_saturation", {}).get("median")
    half = s.get("served_half")
    if sat:
        lines.append(f"| **served detector**, {SERVED} (Detect + Encode + Score) | {_fmt(sat['bare_fps'])} frames/s "
                     f"| {_fmt(sat['e2e_fps'])} frames/s (8 cameras, median of 3 at {(s['served_saturation']['runs'][0]['git_commit'] or '?')[:7]}) "
                     f"| **{sat['ratio']:.2f}** "
                     f"| {_fmt(half and half['latency_p95_s'], 2)} s ({_fmt(half and half['latency_p95_over_compute'])}×) "
                     f"| {_fmt(sat['fixed_path_cpu_ms_per_segment'])} ms |")
    for label, key in (("ViT-S-32", "vits32"), ("ViT-B-32", "vitb32")):
        r, h = s.get(f"{key}_sat"), s.get(f"{key}_half")
        if r:
            lines.append(f"| {label} (served detector with this backbone) | {_fmt(r['bare_fps'])} frames/s "
                         f"| {_fmt(r['e2e_fps'])} frames/s ({r['cameras']} cameras, one run at {(r['git_commit'] or '?')[:7]}) "
                         f"| {r['ratio']:.2f} "
                         f"| {_fmt(h and h['latency_p95_s'], 2)} s ({_fmt(h and h['latency_p95_over_compute'])}×) "
                         f"| {_fmt(r['fixed_path_cpu_ms_per_segment'])} ms |")
    if s.get("scale"):
        lines += ["", "| cameras (served detector, 240 frames/s offered) | scored frames/s | model CPU per frame | fixed path CPU "
                  "per frame | p95 latency | peak memory |", "|---|---|---|---|---|---|"]
        for n, r in s["scale"].items():
            lines.append(f"| {n} | {_fmt(r['e2e_fps'])} | {_fmt(r['model_cpu_ms_per_frame'], 2)} ms "
                         f"| {_fmt(r['fixed_path_cpu_ms_per_frame'], 2)} ms | {_fmt(r['latency_p95_s'])} s "
                         f"| {_fmt(r['peak_rss_mb'] and r['peak_rss_mb'] / 1024, 2)} GB |")
    before = _load("before_served_sat")
    if sat and before:
        b = before["cpu_ms_per_segment"]["fixed_path"]
        a = sat["fixed_path_by_stage_ms"]
        lines += ["", "| fixed-path stage (CPU ms per segment of 16 frames, served detector, 1.5× load; before: 6 cameras) | before "
                  f"({before['git_commit'][:7]}) | now (median of 3) |", "|---|---|---|"]
        for k in sorted(set(a) | set(b), key=lambda k: -b.get(k, a.get(k, 0.0))):
            lines.append(f"| {k} | {_fmt(b.get(k), 1)} | {_fmt(a.get(k), 1)} |")
        lines.append(f"| **total** | **{_fmt(before['cpu_ms_per_segment']['fixed_path_total'])}** "
                     f"| **{_fmt(sat['fixed_path_cpu_ms_per_segment'])}** |")
    table = "\n".join(lines)
    text = README.read_text()
    start, end = "<!-- perf-table:start -->", "<!-- perf-table:end -->"
    if start in text and end in text:
        a, b = text.index(start) + len(start), text.index(end)
        README.write_text(text[:a] + "\n" + table + "\n" + text[b:])
    print(table)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("run", "summary"):
        sys.exit(__doc__)
    if sys.argv[1] == "run":
        run(sys.argv[2:])
    else:
        summary()
