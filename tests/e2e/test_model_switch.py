"""A promotion while a Batch Transform job runs, on the real local stack.

The stack from template.yaml, the real handlers, two real model servers (the shipped artifact and
a candidate with its own version): requests to the old server are held in flight while the
pipeline serves the candidate (``LocalPipeline.serve``, what ``make up REGISTRY=DIR`` does on a
promotion). The job that straddles the switch must complete, every photo must end as exactly one
record, the held requests must be answered by the old model and everything after the switch by
the new one, and the old server must be stopped only once it has answered.
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import local.emulator.model_swap as model_swap
from local.demo import wait_for_records
from local.emulator.pipeline import PipelineOptions, local_pipeline
from local.uploads import synthetic_uploads

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PHOTOS = 16
ANSWERED_BEFORE_HOLD = 3  # the old server answers these, then holds every request until released


def _repacked_with_version(artifact: Path, out: Path, version: str) -> Path:
    """The same weights under another version: what a promotion hands the stack."""
    with tarfile.open(artifact, "r:gz") as source, tarfile.open(out, "w:gz") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.lstrip("./") == "config.json" and data is not None:
                config = json.loads(data)
                config["version"] = version
                data = json.dumps(config, indent=1).encode()
                member.size = len(data)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


class HoldingInvoker:
    """Wraps the invoker factory: the old server's requests wait (in flight) once a few were answered."""

    def __init__(self, real: Callable[[str], Any]) -> None:
        self.real = real
        self.old_url = ""
        self.answered = 0
        self.held = threading.Event()  # set once a request waits
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, url: str) -> Callable[[bytes, str, str, float], tuple[int, bytes]]:
        send = self.real(url)

        def invoke(body: bytes, content_type: str, accept: str, timeout_s: float) -> tuple[int, bytes]:
            if url == self.old_url:
                with self._lock:
                    hold = self.answered >= ANSWERED_BEFORE_HOLD
                    self.answered += 0 if hold else 1
                if hold:
                    self.held.set()
                    assert self.release.wait(120), "the test never released the held requests"
            return send(body, content_type, accept, timeout_s)

        return invoke


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _answers_ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2):
            return True
    except (urllib.error.URLError, OSError):
        return False


def test_a_promotion_during_a_running_job_loses_no_record_and_switches_models(
    shipped_artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tarfile.open(shipped_artifact) as packed:
        old_version = json.loads(packed.extractfile("config.json").read())["version"]  # type: ignore[union-attr]
    new_version = f"{old_version}-candidate"
    candidate = _repacked_with_version(shipped_artifact, tmp_path / "candidate.tar.gz", new_version)
    holding = HoldingInvoker(model_swap.http_invoker)
    monkeypatch.setattr(model_swap, "http_invoker", holding)
    options = PipelineOptions(
        model_artifact=shipped_artifact,
        stack_name="bincount-switch",
        batching_window_s=1.0,
        torch_threads=1,
        log_dir=tmp_path / "logs",
    )
    with local_pipeline(options) as pipeline:
        holding.old_url = old_url = pipeline.serving_url
        uploads = synthetic_uploads(PHOTOS, pipeline.wiring.ingest_prefix, seed=11, bad=False)
        for upload in uploads:
            pipeline.upload(upload.key, upload.body, upload.content_type)
        _wait(holding.held.is_set, "a request held in flight on the old model server")

        switched: dict[str, str] = {}
        promotion = threading.Thread(target=lambda: switched.update(url=pipeline.serve(candidate)))
        promotion.start()
        _wait(lambda: pipeline.invoker.url != old_url, "the switch to the candidate's server")
        assert pipeline.invoker.in_flight(old_url) >= 1  # the old server still owes answers
        assert _answers_ping(old_url)  # and is kept up for them
        holding.release.set()
        promotion.join(180)
        assert not promotion.is_alive() and switched["url"] == pipeline.invoker.url != old_url

        keys = {upload.key for upload in uploads}
        wait_for_records(pipeline, keys, timeout_s=180, label="counted")
        records = pipeline.image_records()
        assert not _answers_ping(old_url)  # stopped once drained
        assert not pipeline.worker_errors and not pipeline.dead_letters()
        outcomes = list(pipeline.executor.outcomes)

    assert {key: len(records[key]) for key in keys} == dict.fromkeys(keys, 1)
    versions = Counter(items[0]["model_version"] for items in records.values())
    assert set(versions) == {old_version, new_version}
    assert versions[old_version] >= ANSWERED_BEFORE_HOLD + 1  # answered before, and the held ones
    by_job: dict[str, set[str]] = defaultdict(set)
    for items in records.values():
        assert items[0]["outcome"] == "count"
        by_job[items[0]["job_name"]].add(items[0]["model_version"])
    assert any(len(seen) == 2 for seen in by_job.values()), by_job  # a job straddled the switch
    assert all(outcome.status == "Completed" for outcome in outcomes)
