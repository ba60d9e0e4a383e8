"""Helpers for integration tests."""

from __future__ import annotations

import time
from pathlib import Path

import psutil


def listening_sockets(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP listener owned by ``pids`` or their children."""
    out = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            out.append((conn.laddr.ip, conn.laddr.port, conn.pid))
    return out


def process_tree(pid: int) -> set[int]:
    try:
        p = psutil.Process(pid)
        return {pid} | {c.pid for c in p.children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def log_tail(path: Path, lines: int = 60) -> str:
    """The last ``lines`` lines of a subprocess's log, for a failure message (CI keeps no tmp
    files); library warnings and the source line Python prints under each are left out."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<no log at {path}: {exc}>"
    kept, skip_next = [], False
    for line in text.splitlines():
        if skip_next and line.startswith(" "):
            skip_next = False
            continue
        skip_next = "Warning:" in line
        if not skip_next:
            kept.append(line)
    return "\n".join(kept[-lines:])


def _log_suffix(log: Path | None) -> str:
    return "" if log is None else f"\n--- last lines of {log} ---\n{log_tail(log)}"


def wait_until(cond, timeout: float, what: str, *, log: Path | None = None) -> None:
    """Poll ``cond`` every 0.5 s; fail naming ``what`` (and quoting ``log``'s tail) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{_log_suffix(log)}")


def wait_for_count(count, target: int, what: str, *, stall_s: float, cap_s: float, log: Path | None = None) -> None:
    """Wait until ``count()`` reaches ``target``. Fails when it has not grown for ``stall_s``
    seconds (a hang) or after ``cap_s`` in all; a slow but moving run on a loaded machine is
    waited for. The message gives the count, when it last grew, and ``log``'s tail."""
    start = time.monotonic()
    last, last_change = count(), start
    while last < target:
        now = time.monotonic()
        if now - last_change > stall_s or now - start > cap_s:
            why = f"no progress for {now - last_change:.0f}s" if now - last_change > stall_s else f"{cap_s:.0f}s cap"
            raise AssertionError(f"{what}: {last} of {target} after {now - start:.0f}s ({why}){_log_suffix(log)}")
        time.sleep(0.5)
        n = count()
        if n > last:
            last, last_change = n, time.monotonic()
