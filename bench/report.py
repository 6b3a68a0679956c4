"""Turning wrk runs into the table, the targets and bench/results/latest.json."""

import json
import os
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loadgen import WrkResult

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "latest.json"
SLOW_SECONDS = 3.0
HIGH_LOAD_KEYS = ("single_me_c256", "single_list_c256")


@dataclass
class Measurement:
    """One endpoint on one server, over every round."""

    key: str
    endpoint: str
    app: str
    server: str
    connections: int
    runs: list[WrkResult] = field(default_factory=list)
    cpu_ms_per_request: list[float] = field(default_factory=list)
    db_cpu_ms_per_request: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "app": self.app,
            "server": self.server,
            "connections": self.connections,
            "rounds": len(self.runs),
            "requests_per_second": _median([r.requests_per_second for r in self.runs]),
            "p50_ms": _median([r.p50_ms for r in self.runs]),
            "p99_ms": _median([r.p99_ms for r in self.runs]),
            "errors": sum(r.errors for r in self.runs),
            "timeouts": sum(r.timeouts for r in self.runs),
            "cpu_ms_per_request": _median(self.cpu_ms_per_request),
            "db_cpu_ms_per_request": _median(self.db_cpu_ms_per_request),
            "runs": [r.as_dict() for r in self.runs],
        }


@dataclass
class Observations:
    measurements: dict[str, Measurement]
    rss_kib: dict[str, list[int]]
    cold_start_s: dict[str, list[float]]
    health_after_high_load: dict[str, int]
    bcrypt_verify_ms: float
    cache_counts: dict[str, float]
    plan: dict[str, float]
    users: int


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _paired_ratio(values: list[float], ceilings: list[float]) -> float | None:
    """Median of the per-round ratios: each pair ran back to back, so a change in machine
    load between rounds does not tilt the comparison."""
    ratios = [value / ceiling for value, ceiling in zip(values, ceilings, strict=False) if ceiling]
    return statistics.median(ratios) if ratios else None


# Each table row: the measurement, the ceilings it is compared with (the first one gives the
# ratio the targets read), and which figures are compared.
ROWS: list[tuple[str, tuple[str, ...], str]] = [
    ("health", ("ping",), "rps"),
    ("ping", (), "ceiling"),
    ("me", ("select1_direct", "select1"), "rps"),
    # The same read with an API key: its CPU per request against the access token's.
    ("me_api_key", ("me",), "cpu"),
    ("list", ("select1_direct", "select1"), "rps"),
    ("list_uncached", ("select1_direct", "select1"), "rps"),
    # The end of the list: by cursor it costs what the first page does; by offset it does not.
    ("list_last_cursor", ("list",), "rps"),
    ("list_last_offset", ("list",), "rps"),
    ("select1_direct", (), "ceiling"),
    ("select1", (), "ceiling"),
    ("login", (), "verify"),
    ("login_flood", (), "none"),
    ("health_idle_probe", (), "ceiling"),
    ("health_under_flood", ("health_idle_probe",), "p99"),
    ("single_health", ("single_ping",), "rps"),
    ("single_ping", (), "ceiling"),
    ("single_me", ("single_select1_direct", "single_select1"), "rps"),
    ("single_list", ("single_select1_direct", "single_select1"), "rps"),
    ("single_list_uncached", ("single_select1_direct", "single_select1"), "rps"),
    ("single_select1_direct", (), "ceiling"),
    ("single_select1", (), "ceiling"),
    ("single_me_c256", ("single_select1_direct_c256",), "p99"),
    ("single_list_c256", ("single_select1_direct_c256",), "p99"),
    ("single_list_uncached_c256", ("single_select1_direct_c256",), "p99"),
    ("single_select1_direct_c256", (), "ceiling"),
    ("single_select1_c256", (), "ceiling"),
]


def _path(row: dict[str, Any]) -> str:
    return str(row["endpoint"]).split()[-1]


def build(observations: Observations, *, quick: bool, elapsed_s: float) -> dict[str, Any]:
    summaries = {key: m.summary() for key, m in observations.measurements.items()}
    rows = []
    for key, ceilings, kind in ROWS:
        if key not in summaries:
            continue
        row = dict(summaries[key], key=key, ratio=None, ratio_text="")
        runs = observations.measurements[key].runs
        texts = []
        for index, ceiling in enumerate(c for c in ceilings if c in summaries):
            ceiling_runs = observations.measurements[ceiling].runs
            if kind == "cpu":
                measured = observations.measurements[key]
                ratio = _paired_ratio(
                    measured.cpu_ms_per_request,
                    observations.measurements[ceiling].cpu_ms_per_request,
                )
                texts.append("-" if ratio is None else f"CPU {ratio:.2f}x {ceiling}")
            elif kind == "rps":
                ratio = _paired_ratio(
                    [r.requests_per_second for r in runs],
                    [r.requests_per_second for r in ceiling_runs],
                )
                texts.append(
                    f"{ratio:.2f}x {_path(summaries[ceiling])}"
                    if ratio is not None
                    else f"{_path(summaries[ceiling])} stalled"
                )
            else:  # p99
                ratio = _paired_ratio([r.p99_ms for r in runs], [r.p99_ms for r in ceiling_runs])
                texts.append("-" if ratio is None else f"p99 {ratio:.2f}x {ceiling}")
            if index == 0:
                row["ratio"] = ratio
        if kind == "verify" and row["cpu_ms_per_request"]:
            row["ratio"] = row["cpu_ms_per_request"] / observations.bcrypt_verify_ms
            texts.append(f"{row['ratio']:.2f} verifies")
        elif kind == "ceiling":
            texts.append("ceiling")
        row["ratio_text"] = ", ".join(texts)
        rows.append(row)
    rss = {key: statistics.mean(values) for key, values in observations.rss_kib.items() if values}
    cold = {key: statistics.median(values) for key, values in observations.cold_start_s.items()}
    return {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "users": observations.users,
        "elapsed_s": round(elapsed_s, 1),
        "cpus": os.cpu_count(),
        "plan": observations.plan,
        "rows": rows,
        "rss_kib_per_worker": observations.rss_kib,
        "rss_kib_mean": rss,
        "cold_start_s": observations.cold_start_s,
        "cold_start_median_s": cold,
        "health_after_high_load": observations.health_after_high_load,
        "bcrypt_verify_ms": observations.bcrypt_verify_ms,
        "cache_counts": observations.cache_counts,
        "targets": _targets(summaries, rows, rss, cold, observations),
    }


def _row_ratio(rows: list[dict[str, Any]], key: str) -> float | None:
    for row in rows:
        if row["key"] == key:
            ratio: float | None = row["ratio"]
            return ratio
    return None


def _targets(
    summaries: dict[str, dict[str, Any]],
    rows: list[dict[str, Any]],
    rss: dict[str, float],
    cold: dict[str, float],
    observations: Observations,
) -> list[dict[str, Any]]:
    def at_least(name: str, value: float | None, bound: float) -> dict[str, Any]:
        passed = value is not None and value >= bound
        shown = "n/a" if value is None else f"{value:.2f}x"
        return {"target": name, "value": value, "shown": shown, "passed": passed}

    def at_most(name: str, value: float | None, bound: float) -> dict[str, Any]:
        passed = value is not None and value <= bound
        shown = "n/a" if value is None else f"{value:.2f}x"
        return {"target": name, "value": value, "shown": shown, "passed": passed}

    high = [summaries[key] for key in HIGH_LOAD_KEYS if key in summaries]
    high_errors = sum(s["errors"] for s in high)
    stalled = [
        key
        for key in HIGH_LOAD_KEYS
        if key in summaries
        and (
            not summaries[key]["requests_per_second"]
            or summaries[key]["timeouts"]
            or observations.health_after_high_load.get(key) != 200
        )
    ]
    high_load = {
        "target": "0 errors at 256 connections, no stall (uvicorn x1, /users/me and list)",
        "value": high_errors,
        "shown": f"{high_errors} errors" + (f", stalled: {', '.join(stalled)}" if stalled else ""),
        "passed": len(high) == len(HIGH_LOAD_KEYS) and high_errors == 0 and not stalled,
    }
    slow = sum(summaries[key]["timeouts"] for key in HIGH_LOAD_KEYS if key in summaries)
    me_p99, ceiling_p99 = (
        summaries.get(key, {}).get("p99_ms")
        for key in ("single_me_c256", "single_select1_direct_c256")
    )
    return [
        at_least("/health >= 0.9x /ping", _row_ratio(rows, "health"), 0.9),
        at_least(
            "/users/me >= 1.0x /select1-direct (uvicorn x1)", _row_ratio(rows, "single_me"), 1.0
        ),
        at_least(
            "cached list of 100 >= 0.5x /select1-direct (uvicorn x1)",
            _row_ratio(rows, "single_list"),
            0.5,
        ),
        {
            "target": f"0 requests over {SLOW_SECONDS:g} s at 256 connections (uvicorn x1)",
            "value": slow,
            "shown": f"{slow} over {SLOW_SECONDS:g} s",
            "passed": slow == 0 and all(key in summaries for key in HIGH_LOAD_KEYS),
        },
        at_most(
            "/users/me p99 at 256 connections <= /select1-direct's",
            _ratio(me_p99, ceiling_p99),
            1.0,
        ),
        at_least(
            "last page by cursor >= 0.67x the first page",
            _row_ratio(rows, "list_last_cursor"),
            0.67,
        ),
        at_most(
            "/health p99 under login flood <= 5x idle p99",
            _row_ratio(rows, "health_under_flood"),
            5.0,
        ),
        high_load,
        at_most("cold start <= 1.2x bare", _ratio(cold.get("app"), cold.get("bare")), 1.2),
        at_most(
            "RSS per worker <= 1.15x bare",
            _ratio(rss.get("production_app"), rss.get("production_bare")),
            1.15,
        ),
    ]


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_report(results: dict[str, Any]) -> None:
    header = (
        "endpoint",
        "server",
        "conns",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU ms/req",
        "DB CPU ms/req",
        "ratio to ceiling",
    )
    widths = (30, 11, 5, 7, 8, 8, 6, 10, 13, 18)
    lines = [header, tuple("-" * w for w in widths)]
    for row in results["rows"]:
        lines.append(
            (
                row["endpoint"] + ("" if row["app"] == "app" else " (bare)"),
                row["server"],
                str(row["connections"]),
                _cell(row["requests_per_second"], 0),
                _cell(row["p50_ms"], 2),
                _cell(row["p99_ms"], 2),
                str(row["errors"]),
                _cell(row["cpu_ms_per_request"], 2),
                _cell(row["db_cpu_ms_per_request"], 2),
                row["ratio_text"],
            )
        )
    print()
    for cells in lines:
        print(
            " | ".join(
                cell.ljust(width) if index < 2 else cell.rjust(width)
                for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
            )
        )
    print()
    rss, cold = results["rss_kib_mean"], results["cold_start_median_s"]
    for key in sorted(rss):
        print(f"RSS per worker {key:<16} {rss[key] / 1024:7.1f} MiB")
    for key in sorted(cold):
        print(f"cold start {key:<5} (median)  {cold[key] * 1000:7.0f} ms")
    print(f"one bcrypt verify in process   {results['bcrypt_verify_ms']:7.1f} ms CPU")
    counts = results.get("cache_counts", {})
    for cache in sorted({name.split()[0] for name in counts}):
        hits, misses = counts.get(f"{cache} hit", 0.0), counts.get(f"{cache} miss", 0.0)
        if hits + misses:
            print(
                f"cache {cache:<9} hit ratio {hits / (hits + misses):7.2%}"
                f"  ({hits:.0f} hits, {misses:.0f} misses, production phase)"
            )
    print()
    for target in results["targets"]:
        verdict = "PASS" if target["passed"] else "FAIL"
        print(f"{verdict}  {target['target']:<66} {target['shown']}")


def write(results: dict[str, Any]) -> Path:
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(results, indent=2) + "\n")
    return RESULTS_PATH
