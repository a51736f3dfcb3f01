"""Summarise a sweep and pack its runs (best validation score first) for the trip back.

A GPU machine returns at most 8 files of 16 MiB, 64 MiB together: one ``summary.json`` (every
run's metrics, history, per-photo logits and last log lines, plus the split) and one tarball of
weights per run while the budget lasts, so ensembles can be compared afterwards without a GPU.
"""

import json
import sys
import tarfile
from pathlib import Path

MAX_FILES = 7  # plus summary.json
MAX_BYTES = 58 * 2**20


def main(runs: Path, prepared: Path, out: Path) -> None:
    summary: dict = {"runs": {}}
    for log in sorted(runs.glob("*.log")):
        entry: dict = {"log_tail": log.read_text(errors="replace").splitlines()[-25:]}
        for name in ("metrics", "history", "predictions", "config"):
            path = runs / log.stem / f"{name}.json"
            if path.is_file():
                entry[name] = json.loads(path.read_text())
        summary["runs"][log.stem] = entry
    manifest = prepared / "manifest.json"
    if manifest.is_file():
        summary["split_manifest"] = json.loads(manifest.read_text())

    def score(name: str) -> float:
        metrics = summary["runs"][name].get("metrics") or {}
        return float(metrics.get("valid", {}).get("score", -9.0))

    ranked = sorted(
        (n for n in summary["runs"] if (runs / n / "model.pt").is_file()), key=score, reverse=True
    )
    summary["ranked"] = ranked
    (out / "summary.json").write_text(json.dumps(summary, default=str))
    used = 0
    packed: list[str] = []
    for name in ranked:
        size = (runs / name / "model.pt").stat().st_size
        if len(packed) >= MAX_FILES or used + size > MAX_BYTES:
            continue
        with tarfile.open(out / f"{name}.tar", "w") as tar:  # fp16 weights do not compress
            for file in ("model.pt", "config.json"):
                tar.add(runs / name / file, arcname=file)
        used += (out / f"{name}.tar").stat().st_size
        packed.append(name)
    print("ranked by valid score:", ranked)
    print("packed:", packed)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
