"""The machine record every benchmark prints beside its figures."""

import math
import os
from pathlib import Path

from eval.machine import calibration_ms, cpu_model, describe


def test_the_record_names_this_machine():
    m = describe()
    assert m["cores"] == os.cpu_count() and len(m["loadavg"]) == 3
    info = Path("/proc/cpuinfo")
    if info.exists() and "model name" in info.read_text():
        assert m["cpu"] == cpu_model() and m["cpu"] in info.read_text()
    assert m["cpu"]


def test_the_calibration_times_real_work():
    ms = calibration_ms(runs=3)
    # 10^6 values sorted and 2 x 10^5 dictionary updates take milliseconds, not microseconds, on any machine
    assert math.isfinite(ms) and 1.0 < ms < 10_000
