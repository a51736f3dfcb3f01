"""The model server dies in the middle of a job on the real local stack: no photo pays for it.

The local stack plays SageMaker replacing a failed instance (local.emulator.serving_server.Supervisor):
the killed server is started again on its port. The requests sent while it was down fail as a
container failure (connection refused), the collector keeps the photos answered before the kill
and queues the rest whole (bincount.failures), and the scheduled reconciler starts their retry.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from local.daemon import state_of
from local.emulator.pipeline import PipelineOptions, local_pipeline
from local.uploads import synthetic_uploads

pytestmark = pytest.mark.e2e

PHOTOS = 40


def test_killing_the_model_server_mid_job_leaves_every_photo_counted(
    shipped_artifact: Path, tmp_path: Path
) -> None:
    options = PipelineOptions(
        model_artifact=shipped_artifact,
        stack_name="bincount-outage",
        batching_window_s=1.0,
        torch_threads=2,
        log_dir=tmp_path / "logs",
        # waiting photos come back within seconds instead of minutes
        environment_overrides={
            "POWERTOOLS_LOG_LEVEL": "WARNING",
            "RETRY_BASE_DELAY_S": "2",
            "PARKED_RETRY_DELAY_S": "5",
        },
        schedule_every_s=2.0,
    )
    uploads = synthetic_uploads(PHOTOS, "incoming/", seed=21, bad=False)
    keys = {upload.key for upload in uploads}
    with local_pipeline(options) as pipeline:
        (supervisor,) = pipeline.model_servers.supervisors.values()
        killed_pid = supervisor.pid
        for upload in uploads:
            pipeline.upload(upload.key, upload.body, upload.content_type)
        deadline = time.monotonic() + 120
        while pipeline.clocks["transform"].items < 3:  # a few records of the job answered
            assert time.monotonic() < deadline, "the transform job never started"
            time.sleep(0.02)
        os.kill(killed_pid, signal.SIGKILL)

        deadline = time.monotonic() + 240
        records = pipeline.image_records()
        while not keys <= set(records) and time.monotonic() < deadline:
            time.sleep(1)
            records = pipeline.image_records()
        restarts = list(pipeline.model_servers.restarts)
        listening = {
            conn.laddr.ip
            for conn in psutil.Process(supervisor.pid).net_connections(kind="tcp")
            if conn.status == psutil.CONN_LISTEN
        }
        assert pipeline.executor.outcomes and any(o.status == "Failed" for o in pipeline.executor.outcomes)
        dead_letters = pipeline.dead_letters()
        state = state_of(pipeline, "http://127.0.0.1:1", tmp_path)

    assert set(records) >= keys, f"no record for {sorted(keys - set(records))[:5]}"  # none lost
    assert all(len(records[key]) == 1 for key in keys)  # exactly one record each
    assert [key for key in keys if records[key][0]["outcome"] != "count"] == []  # none rejected
    assert dead_letters == []
    assert len(restarts) == 1 and restarts[0].exit_code == -signal.SIGKILL
    assert supervisor.pid != killed_pid and listening == {"127.0.0.1"}  # the restarted one: loopback only
    assert [entry["exit_code"] for entry in state.model_server_restarts] == [-signal.SIGKILL]
