"""Progress of long loops on stderr: a tqdm bar on a terminal, plain lines elsewhere (a log file, CI,
`| tee`), where a bar's carriage returns would pile up on one line and say nothing until the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
LINE_SECONDS = 5.0  # off a terminal: a line at the start, then at most one this often, then one at the end


def progress(iterable: Iterable[T], desc: str, unit: str, enabled: bool) -> Iterable[T]:
    """`iterable`, reporting its progress on stderr when `enabled`."""
    if not enabled:
        return iterable
    if sys.stderr.isatty():
        return tqdm(iterable, desc=desc, unit=unit)
    return _lines(iterable, desc, unit)


def _lines(iterable: Iterable[T], desc: str, unit: str) -> Iterator[T]:
    total = len(iterable) if isinstance(iterable, Sized) else None
    of = f"/{total:,}" if total is not None else ""
    start = last = time.monotonic()
    print(f"{desc}: 0{of} {unit}s", file=sys.stderr, flush=True)
    done = 0
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= LINE_SECONDS:
            print(f"{desc}: {done:,}{of} {unit}s, {now - start:.0f} s", file=sys.stderr, flush=True)
            last = now
    print(f"{desc}: {done:,}{of} {unit}s done in {time.monotonic() - start:.1f} s", file=sys.stderr, flush=True)
