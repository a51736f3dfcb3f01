"""Atomic writes: readers see the old file or the new one, never half, and failures leave no debris."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.files import replacing, write_atomically


def test_write_atomically_creates_parents_and_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "state.json"
    write_atomically(target, "first")
    write_atomically(target, b"second")
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["state.json"]


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_partial(tmp_path: Path) -> None:
    target = tmp_path / "entry.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), replacing(target) as partial:
        partial.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["entry.json"]


def test_sha256_file_reads_in_pieces_and_matches_the_whole(tmp_path: Path) -> None:
    import hashlib

    from common.files import sha256_file

    data = bytes(range(256)) * 9000  # over two 1 MiB pieces
    path = write_atomically(tmp_path / "big.bin", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
