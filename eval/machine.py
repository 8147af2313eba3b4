"""What machine a benchmark ran on: CPU, cores, load, and a fixed calibration workload's time.

Latency figures measured in different sessions differ by up to 2x for the same code (the same commit's shipped
reply p95 was 31-35 ms on one 2-core machine and 16-17 ms on another): every benchmark records this beside its
figures, so that figures from two machines are compared through their calibration times, not taken as equal.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np

CALIBRATION_RUNS = 5


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def calibration_ms(runs: int = CALIBRATION_RUNS) -> float:
    """Median time of a fixed single-threaded workload shaped like a reply's: a numpy sort and gather over 10^6
    values and 2 x 10^5 Python dictionary operations. Lower is a faster machine."""
    rng = np.random.default_rng(0)
    values = rng.random(1_000_000)
    rows = rng.integers(0, len(values), 200_000)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        np.sort(values)
        float(values[rows].sum())
        d: dict[int, int] = {}
        for i in range(200_000):
            d[i & 4095] = d.get(i & 4095, 0) + i
        times.append((time.perf_counter() - t) * 1e3)
    return round(float(np.median(times)), 1)


def describe() -> dict:
    """{"cpu", "cores", "loadavg" (1, 5, 15 min), "calibration_ms"} of this machine, now."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "loadavg": [round(x, 2) for x in load],
            "calibration_ms": calibration_ms()}
