"""What metrics cost: the app with METRICS_ENABLED=true against the same app with false.

Both run the production command (gunicorn, same workers, same database) side by side; each
round measures /api/v1/users/me and /health on both, in alternating order, and the ratios are
medians of per-round ratios, as elsewhere in the bench. The target: metrics on within 5% of
metrics off, in requests per second.
"""

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import loadgen
import servers
from loadgen import Load, Request

CONNECTIONS = 32
TARGET_RATIO = 0.95
ENDPOINTS = (
    ("me", "GET /api/v1/users/me", "/api/v1/users/me"),
    ("health", "GET /health", "/health"),
)
SWITCHES = ("on", "off")


@dataclass
class Side:
    requests_per_second: list[float] = field(default_factory=list)
    cpu_ms_per_request: list[float] = field(default_factory=list)


def _measure(server: servers.Server, load: Load, work_dir: Path, side: Side) -> None:
    cpu_before = servers.settled_cpu_seconds(server.pid)
    result = loadgen.run(load, work_dir)
    cpu_spent = servers.settled_cpu_seconds(server.pid) - cpu_before
    if result.errors:
        raise RuntimeError(f"{load.path} answered {result.errors} errors")
    side.requests_per_second.append(result.requests_per_second)
    served = result.requests + load.connections
    side.cpu_ms_per_request.append(cpu_spent * 1000 / served)


def _paired(on: list[float], off: list[float]) -> float | None:
    ratios = [a / b for a, b in zip(on, off, strict=True) if b]
    return statistics.median(ratios) if ratios else None


def compare(
    *,
    rounds: int,
    seconds: int,
    warmup_seconds: int,
    env: dict[str, str],
    work_dir: Path,
    port: Callable[[], int],
    log_in: Callable[[int], str],
) -> dict[str, Any]:
    """Run the comparison and return its figures (also printed as it goes)."""
    started = {
        switch: servers.start(
            "app",
            "gunicorn",
            port(),
            dict(env, METRICS_ENABLED="true" if switch == "on" else "false"),
            work_dir,
        )
        for switch in SWITCHES
    }
    try:
        for server in started.values():
            servers.wait_until_ready(server, "/health")
        token = log_in(started["on"].port)
        me = Request(headers=(("Authorization", f"Bearer {token}"),))
        loads = {
            (key, switch): Load(
                started[switch].port,
                path,
                CONNECTIONS,
                seconds,
                me if key == "me" else Request(),
            )
            for key, _, path in ENDPOINTS
            for switch in SWITCHES
        }
        for load in loads.values():
            loadgen.run(replace(load, seconds=warmup_seconds), work_dir)
        sides = {pair: Side() for pair in loads}
        print(f"metrics on vs off: {started['on'].label()} each, alternating", flush=True)
        for round_number in range(rounds):
            order = SWITCHES if round_number % 2 == 0 else SWITCHES[::-1]
            for key, _, _ in ENDPOINTS:
                for switch in order:
                    _measure(started[switch], loads[key, switch], work_dir, sides[key, switch])
                    figures = sides[key, switch]
                    print(
                        f"  {key:<7} metrics {switch:<3} {figures.requests_per_second[-1]:>9.0f}"
                        f" req/s  {figures.cpu_ms_per_request[-1]:6.3f} CPU ms/req",
                        flush=True,
                    )
    finally:
        for server in started.values():
            servers.stop(server)
    results: dict[str, Any] = {"connections": CONNECTIONS, "rounds": rounds, "endpoints": {}}
    for key, endpoint, _ in ENDPOINTS:
        on, off = sides[key, "on"], sides[key, "off"]
        results["endpoints"][key] = {
            "endpoint": endpoint,
            "on_requests_per_second": statistics.median(on.requests_per_second),
            "off_requests_per_second": statistics.median(off.requests_per_second),
            "throughput_ratio": _paired(on.requests_per_second, off.requests_per_second),
            "on_cpu_ms_per_request": statistics.median(on.cpu_ms_per_request),
            "off_cpu_ms_per_request": statistics.median(off.cpu_ms_per_request),
            "cpu_ratio": _paired(on.cpu_ms_per_request, off.cpu_ms_per_request),
        }
    return results


def print_summary(results: dict[str, Any]) -> None:
    print(f"\nmetrics on vs off (target: on >= {TARGET_RATIO:.2f}x off in req/s)")
    print(f"  {'endpoint':<22} {'on req/s':>9} {'off req/s':>9} {'ratio':>6}   CPU ms/req on/off")
    for figures in results["endpoints"].values():
        ratio = figures["throughput_ratio"]
        verdict = "met" if ratio is not None and ratio >= TARGET_RATIO else "NOT MET"
        print(
            f"  {figures['endpoint']:<22} {figures['on_requests_per_second']:>9.0f}"
            f" {figures['off_requests_per_second']:>9.0f} {ratio or 0:>6.3f}"
            f"   {figures['on_cpu_ms_per_request']:.3f} / {figures['off_cpu_ms_per_request']:.3f}"
            f" ({figures['cpu_ratio'] or 0:.3f}x)  {verdict}"
        )
