"""Summarise a sweep and pack the best runs (by validation score) for the trip back.

A GPU machine returns at most 8 files of 16 MiB: one ``summary.json`` (every run's metrics,
history and last log lines, plus the split) and one small tarball per top run.
"""

import json
import sys
import tarfile
from pathlib import Path


def main(runs: Path, prepared: Path, out: Path, keep: int = 3) -> None:
    summary: dict = {"runs": {}}
    for log in sorted(runs.glob("*.log")):
        entry: dict = {"log_tail": log.read_text(errors="replace").splitlines()[-25:]}
        for name in ("metrics", "history"):
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
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    for name in ranked[:keep]:
        with tarfile.open(out / f"{name}.tar.gz", "w:gz") as tar:
            for file in ("model.pt", "config.json", "metrics.json", "history.json"):
                if (runs / name / file).is_file():
                    tar.add(runs / name / file, arcname=file)
    print("ranked by valid score:", ranked)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
