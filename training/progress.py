"""Progress reporting: a tqdm bar in a terminal, a few plain log lines otherwise.

SageMaker and CI capture stdout into log files, where a redrawn bar turns into thousands of
carriage-return fragments; there we print a line every ``log_every`` fraction instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def is_terminal() -> bool:
    return sys.stderr.isatty() and sys.stdout.isatty()


def progress(
    items: Iterable[T], total: int | None = None, desc: str = "", log_every: float = 0.25, unit: str = "it"
) -> Iterator[T]:
    """Iterate ``items`` with a bar (terminal) or ~``1/log_every`` plain progress lines (logs)."""
    if is_terminal():
        yield from tqdm(items, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    start = time.perf_counter()
    # small jobs get one line at the end; larger ones one every ``log_every`` of the way
    step = (max(1, int(total * log_every)) if total >= 20 else total) if total else 0
    for done, item in enumerate(items, start=1):
        yield item
        if step and (done % step == 0 or done == total):
            elapsed = time.perf_counter() - start
            print(f"{desc}: {done}/{total} {unit} ({elapsed:.1f}s)", flush=True)
