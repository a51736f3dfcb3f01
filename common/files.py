"""Files that a reader sees whole or not at all.

State files, registry entries, label manifests, prepared photos, checkpoints and caches are read by
other processes (a second `bincount` command, the model server, a resumed training job) while they
may be rewritten, and a spot interruption or Ctrl-C can stop the writer at any byte. Writing a
temporary file beside the target and renaming it over the target is atomic on POSIX file systems;
this module is that pattern's one home, for every part of the project (torch-free, stdlib only, so
the training container and the Lambda-free tools can both import it).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends normally, move it over ``path``.

    The temporary name carries the process id, so two writers never share one, and it is removed
    when the block raises: a failed write leaves the previous file (or none) and no debris.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        yield partial
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def write_atomically(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` so that readers never see half of it."""
    with replacing(path) as partial:
        if isinstance(data, bytes):
            partial.write_bytes(data)
        else:
            partial.write_text(data, encoding="utf-8")
    return Path(path)


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB pieces (artifacts run to tens of MB).

    ``model.network`` keeps its own copy: it travels inside the model artifact's ``code/``, where
    only the ``model`` package exists; everything else (registry, loop) uses this one, which
    imports no torch.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
