"""Fixtures of the training tests."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from imaging import draw_bin, encode

from cli.commands.export_labels import MANIFEST, MANIFEST_FORMAT


@pytest.fixture
def reviewed_folder(tmp_path: Path) -> Callable[[int], Path]:
    """A folder as ``bincount export-labels`` writes it: ``images/<count>/<name>.jpg``, ``labels.csv``
    and its ``sources.json`` manifest, with ``n`` small generated photos of 0-2 objects."""

    def make(n: int) -> Path:
        root = tmp_path / "labels"
        rows = ["image,count,key"]
        for i in range(n):
            path = root / "images" / str(i % 3) / f"bin-{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encode(draw_bin(i % 3, i, size=(60, 40))))
            rows.append(f"images/{i % 3}/bin-{i}.jpg,{i % 3},uploads/bin-{i}.jpg")
        (root / "labels.csv").write_text("\n".join(rows) + "\n")
        (root / MANIFEST).write_text(json.dumps({"format": MANIFEST_FORMAT, "photos": []}))
        return root

    return make
