"""``make bench-pipeline``'s pure parts: options refused in one line, the side-by-side table, the
CPU meter's accounting of the processes it sees."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from local.bench.cpu_meter import CpuMeter
from local.bench.pipeline_bench import comparison, main


def summary(end_to_end: float, collector: float, cpu: dict[str, float]) -> dict[str, Any]:
    return {
        "end_to_end_images_per_s": end_to_end,
        "stages": {"upload": 10.0, "collector": collector},
        "images_per_cpu_s": round(100 / sum(cpu.values()), 2),
        "cpu_ms_per_image": {role: 10 * seconds for role, seconds in cpu.items()},
    }


def test_comparison_puts_the_designs_side_by_side_with_their_ratio() -> None:
    table = comparison(
        {
            "previous": summary(2.0, 2.5, {"emulator": 7.0, "pipeline": 3.0}),
            "batched": summary(5.0, 10.0, {"emulator": 2.0, "pipeline": 2.0}),
        }
    )
    rows = {line[:18].strip(): line[18:].split() for line in table.splitlines()}
    assert rows["end to end"] == ["2.0", "5.0", "2.50x"]
    assert rows["collector"] == ["2.5", "10.0", "4.00x"]
    assert rows["upload"][-1] == "1.00x"
    assert rows["ms emulator"] == ["70.0", "20.0", "0.29x"]
    assert rows["images/CPU-s"] == ["10.0", "25.0", "2.50x"]


@pytest.mark.parametrize(
    "argv",
    [["--designs", "previous,fastest"], ["--designs", ","], ["--count", "0"]],
)
def test_bad_options_are_refused_in_one_line(argv: list[str], tmp_path: Path, capsys: Any) -> None:
    model = tmp_path / "model.tar.gz"
    model.write_bytes(b"x")
    assert main(["--model", str(model), *argv]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"local.bench.pipeline_bench: error: {argv[0]}")


def test_cpu_meter_counts_a_child_that_starts_after_it() -> None:
    meter = CpuMeter(interval_s=0.05)
    meter.start()
    busy = (
        "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(0.3)"
    )
    child = subprocess.Popen([sys.executable, "-c", busy])
    child.wait(timeout=30)
    time.sleep(0.1)
    used = meter.stop()
    assert used.get("other", 0.0) >= 0.2  # the child's CPU, counted from zero
    assert "pipeline" in used
