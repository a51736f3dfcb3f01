"""The real SageMaker PyTorch serving stack (TorchServe + sagemaker-pytorch-inference) on this machine.

The same code path as SageMaker's PyTorch inference container: the toolkit's handler service
loads ``/opt/ml/model/code/inference.py`` and calls our ``model_fn / input_fn / predict_fn /
output_fn`` once per request. It needs what that container has: Java 17, root (it writes
``/etc/sagemaker-ts.properties``), the model at the fixed path ``/opt/ml/model``, and the
``serving`` dependency group (``pip install --group serving``). Where any of that is missing
:func:`torchserve_unavailable` says why, and the demo keeps the small fallback server.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from common.malloc import with_malloc_env
from local.emulator.moto_server import free_port
from local.emulator.serving_server import server_process
from model.instances import local_plan

SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
START = (
    "from sagemaker_pytorch_serving_container import torchserve; "
    "torchserve.start_torchserve(handler_service='sagemaker_pytorch_serving_container.handler_service')"
)


def torchserve_unavailable() -> str | None:
    """Why the real serving stack cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "TorchServe's SageMaker toolkit writes /etc/sagemaker-ts.properties: run as root"
    if shutil.which("java") is None:
        return "TorchServe needs Java (17) on PATH"
    if importlib.util.find_spec("sagemaker_pytorch_serving_container") is None:
        return "sagemaker-pytorch-inference is not installed: pip install --group serving"
    if shutil.which("torchserve", path=_path()) is None:
        return "the torchserve command is not installed: pip install --group serving"
    if torchserve_running():
        return "a TorchServe already runs on this machine (one per machine: /opt/ml/model, its pid file)"
    return None


def torchserve_running() -> bool:
    """Is a TorchServe up (e.g. `make up`'s)? It refuses a second one, as its pid file is global."""
    import psutil

    pid_file = Path(tempfile.gettempdir()) / ".model_server.pid"
    try:
        return "org.pytorch.serve.ModelServer" in psutil.Process(int(pid_file.read_text().strip())).cmdline()
    except (OSError, ValueError, psutil.Error):
        return False


def _path() -> str:
    return os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])


@contextlib.contextmanager
def torchserve_process(
    model_dir: Path,
    workers: int | None = None,
    log_path: Path | None = None,
    startup_timeout_s: float = 180,
    threads: int | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Serve ``model_dir`` (an extracted model.tar.gz) as SageMaker would; yields the URL.

    ``workers`` and ``threads`` (per worker) default to this machine's plan in
    ``model.instances``, the rule template.yaml applies to the transform instance type.
    """
    plan = local_plan()
    workers = workers or plan.workers
    threads = threads or max(1, plan.threads_per_worker * plan.workers // workers)
    reason = torchserve_unavailable()
    if reason:
        raise RuntimeError(reason)
    if SAGEMAKER_MODEL_DIR.exists():
        shutil.rmtree(SAGEMAKER_MODEL_DIR)
    shutil.copytree(model_dir, SAGEMAKER_MODEL_DIR)
    port = free_port()
    # TorchServe writes logs/ (and its config snapshots) under its working directory
    workdir = (
        Path(tempfile.mkdtemp(prefix="torchserve-")) if log_path is None else log_path.parent / "torchserve"
    )
    workdir.mkdir(parents=True, exist_ok=True)
    env = {
        **with_malloc_env(os.environ),
        "PATH": _path(),
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": str(SAGEMAKER_MODEL_DIR / "code"),
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
        "BINCOUNT_THREADS": str(threads),
        "TS_MAX_REQUEST_SIZE": "104857600",
        "TS_MAX_RESPONSE_SIZE": "104857600",
        # TorchServe's gRPC and metrics ports default to fixed numbers (7070, 7071, 8082): free ones
        # let `make up`'s server and a `make demo` (or a test) run side by side.
        "TS_GRPC_INFERENCE_PORT": str(free_port()),
        "TS_GRPC_MANAGEMENT_PORT": str(free_port()),
        "TS_METRICS_ADDRESS": f"http://127.0.0.1:{free_port()}",
        # The toolkit writes inference/management on 0.0.0.0 (right inside a container); its
        # config sets enable_envvars_config=true, so TS_* variables win: this machine's loopback only.
        "TS_INFERENCE_ADDRESS": f"http://127.0.0.1:{port}",
        "TS_MANAGEMENT_ADDRESS": f"http://127.0.0.1:{free_port()}",
        "LOG_LOCATION": str(workdir / "logs"),
        "METRICS_LOCATION": str(workdir / "logs"),
        **(extra_env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    try:
        with server_process(
            [sys.executable, "-c", START], env, url, log_path, startup_timeout_s, cwd=workdir
        ):
            try:
                yield url
            finally:  # TorchServe's own shutdown first, then the process group
                subprocess.run(
                    ["torchserve", "--stop"],
                    env=env,
                    cwd=workdir,
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
    finally:
        if log_path is None:
            shutil.rmtree(workdir, ignore_errors=True)
