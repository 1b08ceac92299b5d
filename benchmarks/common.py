"""Shared helpers of the benchmark scripts: machine description and result files."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from vidcompress.report import machine_info as machine
from vidcompress.report import machine_line

__all__ = ["RESULTS", "machine", "machine_line", "timed", "write_results"]

RESULTS = Path(__file__).parent / "results"


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write results/<name>.json and results/<name>.md; return their paths."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    json_path, md_path = RESULTS / f"{name}.json", RESULTS / f"{name}.md"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path


def timed(function, *args, repeat: int = 1, **kwargs):
    """(best wall time in seconds over `repeat` runs, last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result
