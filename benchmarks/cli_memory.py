"""Peak memory and time of the command line on a 90 MB model, and how fast `--help` answers.

The model: a BERT of MiniLM-L6's size (22.7 M parameters, 91 MB as fp32 safetensors; random weights
from its transformers configuration). Each command runs in a fresh interpreter that reports its own
peak resident memory (ru_maxrss) at exit; the baseline is an interpreter that imports torch and the
library and does nothing, and "above baseline" is what the command itself added.

    python -m benchmarks.cli_memory
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine, machine_line, write_results
from vidcompress.report import markdown_table

RUNNER = """
import resource, sys
from vidcompress.cli import main
import torch, vidcompress.codec, vidcompress.io  # the baseline imports these too
sys.argv = ["vidcompress", *sys.argv[1:]]
try:
    main()
except SystemExit as exit:
    assert not exit.code, exit.code
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""
BASELINE = """
import resource, sys
import torch, vidcompress.cli, vidcompress.codec, vidcompress.io
print("maxrss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def _peak(code: str, *args: str) -> tuple[float, float]:
    """(peak resident MB, wall seconds) of a fresh interpreter running `code`."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    line = next(line for line in result.stderr.splitlines() if line.startswith("maxrss_kb"))
    return int(line.split()[1]) / 1024, seconds


def main() -> None:
    import transformers

    from vidcompress.io import save_state_dict

    info = machine()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        model = transformers.BertModel(
            transformers.BertConfig(
                vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536
            )
        )
        source = folder / "model.safetensors"
        save_state_dict(model.state_dict(), source)
        del model
        file_mb = source.stat().st_size / 2**20
        baseline, _ = _peak(BASELINE)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vidcompress.cli", "--help"], capture_output=True, check=True)
        help_seconds = time.perf_counter() - start
        steps = [
            ("prune", [str(source), "-o", str(folder / "p.safetensors"), "--sparsity", "fc=0.5"]),
            ("quantize", [str(folder / "p.safetensors"), "-o", str(folder / "q.safetensors"), "--bits", "fc=8,emb=8"]),
            ("encode", [str(folder / "q.safetensors"), "-o", str(folder / "m.vcz")]),
            ("decode", [str(folder / "m.vcz"), "-o", str(folder / "d.safetensors")]),
        ]
        rows: list[dict[str, Any]] = []
        for command, args in steps:
            peak, seconds = _peak(RUNNER, "-q", command, *args)
            rows.append({"command": command, "peak_mb": peak, "above_baseline_mb": peak - baseline, "seconds": seconds})
            print(rows[-1])
    lines = [
        "# The command line: peak memory and time on a 91 MB model",
        "",
        f"Machine: {machine_line(info)}. Command: `python -m benchmarks.cli_memory`.",
        "",
        f"Model file: {file_mb:.1f} MiB (BERT at MiniLM-L6 size, fp32). Baseline interpreter (torch and",
        f"vidcompress imported, nothing done): {baseline:.0f} MiB. `vidcompress --help`: {help_seconds:.2f} s",
        "(a fresh interpreter; the command line imports torch only in the commands that use it).",
        "",
        markdown_table(
            ["command", "peak MiB", "above baseline MiB", "above baseline / file", "seconds"],
            [
                [
                    r["command"],
                    f"{r['peak_mb']:.0f}",
                    f"{r['above_baseline_mb']:.0f}",
                    f"{r['above_baseline_mb'] / file_mb:.2f}x",
                    f"{r['seconds']:.1f}",
                ]
                for r in rows
            ],
        ),
    ]
    data = {"machine": info, "file_mb": file_mb, "baseline_mb": baseline, "help_seconds": help_seconds, "rows": rows}
    write_results("cli_memory", data, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
