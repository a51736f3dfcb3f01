"""The glibc malloc settings torch runs with on CPU: the one Python home for them.

glibc returning torch's activation buffers to the OS after every step costs 1.5-3x on 2 CPU cores
(measured). The variables are read once when a process starts, so they are given to
the processes we start (training, the local model servers, the daemon). The Makefile exports the same
values (it cannot import Python) and template.yaml sets them on the SageMaker model;
tests/common/test_malloc.py checks the three agree. Not in the ``model`` package: the local model
server imports this before the artifact's own ``code/model`` must be free to load.
"""

from __future__ import annotations

from collections.abc import Mapping

MALLOC_ENV: Mapping[str, str] = {
    "MALLOC_MMAP_THRESHOLD_": "2000000000",
    "MALLOC_TRIM_THRESHOLD_": "4000000000",
    "MALLOC_TOP_PAD_": "1000000000",
}


def with_malloc_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` (for a child process) with the malloc settings on top."""
    return {**env, **MALLOC_ENV}
