"""Launch training, tuning and retraining of the counting model on SageMaker (Python SDK v3).

``python -m training.launcher train|tune|best ...``

- ``train``: one training job from ``training/train.py`` with Debugger rules (loss not decreasing,
  overfit, vanishing gradient), the ProfilerReport rule and system monitoring; optional managed spot
  training with checkpoints. ``ModelTrainer`` (v3) takes no Debugger/Profiler settings, so the request
  it builds is sent through ``sagemaker.core.resources.TrainingJob.create`` with those added.
- ``tune``: a ``HyperparameterTuner`` over the same ``ModelTrainer`` (learning rate log-scaled, batch
  size, backbone lr multiplier, loss, or any ``--range``), objective ``valid:accuracy`` (Maximize),
  ``valid:rmse`` (Minimize) or ``valid:score`` (the trainer's own checkpoint criterion).
  Tuning jobs carry no Debugger rules on AWS: retrain the best configuration with ``train``.
- ``best``: the best training job of a tuning job (or any training job) and its
  ``ModelArtifacts.S3ModelArtifacts``, printed as ``sam deploy --parameter-overrides ModelDataUrl=...``.

``--dry-run`` builds everything offline (no AWS call leaves the process: see
``training/sagemaker_capture.py``) and prints the exact CreateTrainingJob /
CreateHyperParameterTuningJob request. The SageMaker SDK is imported lazily: it is slow to import.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import boto3

LOG = logging.getLogger("training.launcher")

REPO_ROOT = Path(__file__).resolve().parents[1]
ENTRY_SCRIPT = "sm_entry.py"
DEFAULT_TRAINING_INSTANCE = "ml.g4dn.xlarge"
DEFAULT_FRAMEWORK_VERSION = "2.8"  # newest PyTorch training container on Python 3.12
DEFAULT_PY_VERSION = "py312"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
#: Container dependencies beyond the PyTorch image: read from pyproject's ``model`` group minus what
#: the image already ships.
_IMAGE_PROVIDES = ("torch", "torchvision", "numpy", "pillow", "onnx", "onnxruntime")


# --- metric definitions -------------------------------------------------------------------------
# One source of truth: the trainer prints METRIC_LINE_FORMAT once per epoch and exports the regexes
# (training.train.METRIC_DEFINITIONS); SageMaker scrapes the job's log with them and the tuner reads
# its objective from them. Names look like ``valid:accuracy`` (CloudWatch style).
def metric_definitions() -> list[dict[str, str]]:
    """``[{"Name": ..., "Regex": ...}]`` exactly as ``training/train.py`` defines them."""
    from training.train import METRIC_DEFINITIONS

    return [{"Name": str(m["Name"]), "Regex": str(m["Regex"])} for m in METRIC_DEFINITIONS]


#: Tuning objectives and their direction; ``valid:score`` is what train.py keeps its checkpoint by.
OBJECTIVES: dict[str, str] = {
    "valid:accuracy": "Maximize",
    "valid:rmse": "Minimize",
    "valid:mae": "Minimize",
    "valid:score": "Maximize",
}


def objective_name(text: str) -> str:
    """Accept ``valid_accuracy`` as well as the metric's own name ``valid:accuracy``."""
    name = text if ":" in text else text.replace("_", ":", 1)
    if name not in OBJECTIVES:
        raise ValueError(f"objective {text!r}: choose one of {sorted(OBJECTIVES)}")
    return name


# --- configuration --------------------------------------------------------------------------------
@dataclass
class LaunchConfig:
    """Everything a job needs; built from the CLI, or directly in tests."""

    role: str
    bucket: str
    region: str
    channels: dict[str, str]
    prefix: str = "bincount"
    job_prefix: str = "bincount"
    instance_type: str = DEFAULT_TRAINING_INSTANCE
    instance_count: int = 1
    volume_size_gb: int = 30
    max_run_s: int = 3 * 3600
    use_spot: bool = False
    max_wait_s: int | None = None
    framework_version: str = DEFAULT_FRAMEWORK_VERSION
    py_version: str = DEFAULT_PY_VERSION
    hyperparameters: dict[str, str] = field(default_factory=dict)
    image_uri: str | None = None
    source_uri: str | None = None  # a pre-uploaded sourcedir.tar.gz (S3) instead of staging the repo
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def s3_root(self) -> str:
        return (
            f"s3://{self.bucket}/{self.prefix.strip('/')}"
            if self.prefix.strip("/")
            else f"s3://{self.bucket}"
        )

    def validate(self) -> None:
        if not self.role.startswith("arn:"):
            raise ValueError(f"--role must be an IAM role ARN, got {self.role!r}")
        for name, uri in self.channels.items():
            if not uri.startswith("s3://"):
                raise ValueError(f"channel {name!r}: {uri!r} is not an s3:// URI (upload the data first)")
        if not self.channels:
            raise ValueError("at least one input channel is needed (--data or --channel NAME=s3://...)")
        if self.use_spot:
            wait = self.max_wait_s or self.max_run_s * 2
            if wait < self.max_run_s:
                raise ValueError("--max-wait must be at least --max-run for spot training")


def training_image(cfg: LaunchConfig) -> str:
    """The AWS PyTorch training image for the region and instance (resolved offline by the SDK)."""
    if cfg.image_uri:
        return cfg.image_uri
    from sagemaker.core import image_uris

    return str(
        image_uris.retrieve(
            "pytorch",
            region=cfg.region,
            version=cfg.framework_version,
            py_version=cfg.py_version,
            instance_type=cfg.instance_type,
            image_scope="training",
        )
    )


def container_requirements(pyproject: Path = REPO_ROOT / "pyproject.toml") -> list[str]:
    """What ``pip`` must add to the PyTorch image: pyproject's model group minus what the image has."""
    groups = tomllib.loads(pyproject.read_text())["dependency-groups"]
    wanted = [*groups["model"], "tqdm>=4.66"]
    out = []
    for requirement in wanted:
        if not isinstance(requirement, str):
            continue
        name = re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()
        if name not in _IMAGE_PROVIDES:
            out.append(requirement)
    return out


_ENTRY_SHIM = '''"""SageMaker entry point: run ``training.train`` as a module so ``import model`` works.

Generated by training/launcher.py; the container runs it from the source root with the
hyperparameters as ``--name value`` flags.
"""
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
runpy.run_module("training.train", run_name="__main__", alter_sys=True)
'''


def stage_source_dir(dest: Path, repo_root: Path = REPO_ROOT) -> Path:
    """Copy what the training container needs (``training/``, ``model/``) plus the entry shim.

    Only these two packages and ``bincount/image_formats.py`` travel: the rest of the repository
    (Lambdas, tests, build output, the virtualenv) has no business in a training job and would slow
    every upload.
    """
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache")
    for package in ("training", "model"):
        src = repo_root / package
        if not (src / "train.py").exists() and package == "training":
            LOG.warning("training/train.py is missing in %s: the job would fail", repo_root)
        shutil.copytree(src, dest / package, ignore=ignore, dirs_exist_ok=True)
    # training.data reads the image suffixes from their one, torch-free home in the Lambda package.
    (dest / "bincount").mkdir(exist_ok=True)
    for name in ("__init__.py", "image_formats.py"):
        shutil.copy2(repo_root / "functions" / "bincount" / name, dest / "bincount" / name)
    (dest / ENTRY_SCRIPT).write_text(_ENTRY_SHIM)
    (dest / "requirements.txt").write_text(
        "\n".join(container_requirements(repo_root / "pyproject.toml")) + "\n"
    )
    return dest


# --- SageMaker objects ----------------------------------------------------------------------------
def sagemaker_session(cfg: LaunchConfig, boto_session: boto3.Session | None = None) -> Any:
    import boto3
    from sagemaker.core.helper.session_helper import Session

    boto_session = boto_session or boto3.Session(region_name=cfg.region)
    return Session(
        boto_session=boto_session, default_bucket=cfg.bucket, default_bucket_prefix=cfg.prefix or None
    )


def build_model_trainer(cfg: LaunchConfig, session: Any, source_dir: str, *, checkpoints: bool = True) -> Any:
    """A ``ModelTrainer`` for ``training/train.py``: image, compute, channels, metrics, checkpoints."""
    from sagemaker.core.shapes import (
        Channel,
        CheckpointConfig,
        DataSource,
        MetricDefinition,
        OutputDataConfig,
        S3DataSource,
    )
    from sagemaker.core.training.configs import Compute, SourceCode, StoppingCondition
    from sagemaker.train import ModelTrainer

    cfg.validate()
    stopping = StoppingCondition(max_runtime_in_seconds=cfg.max_run_s)
    if cfg.use_spot:
        stopping.max_wait_time_in_seconds = cfg.max_wait_s or cfg.max_run_s * 2
    trainer = ModelTrainer(
        sagemaker_session=session,
        role=cfg.role,
        base_job_name=cfg.job_prefix,
        training_image=training_image(cfg),
        source_code=SourceCode(
            source_dir=source_dir, entry_script=ENTRY_SCRIPT, requirements="requirements.txt"
        ),
        compute=Compute(
            instance_type=cfg.instance_type,
            instance_count=cfg.instance_count,
            volume_size_in_gb=cfg.volume_size_gb,
            enable_managed_spot_training=cfg.use_spot,
        ),
        stopping_condition=stopping,
        hyperparameters=dict(cfg.hyperparameters),
        # Channel shapes, not InputData: the tuner copies these verbatim into its job definition.
        input_data_config=[
            Channel(
                channel_name=name,
                data_source=DataSource(
                    s3_data_source=S3DataSource(
                        s3_data_type="S3Prefix", s3_uri=uri, s3_data_distribution_type="FullyReplicated"
                    )
                ),
                input_mode="File",
            )
            for name, uri in cfg.channels.items()
        ],
        output_data_config=OutputDataConfig(s3_output_path=f"{cfg.s3_root}/output"),
        environment=dict(cfg.environment) or None,
    )
    trainer.with_metric_definitions(
        [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in metric_definitions()]
    )
    if cfg.use_spot and checkpoints:
        # Spot capacity can vanish mid-epoch: SageMaker syncs local_path <-> s3_uri and train.py resumes
        # from the newest checkpoint there. One folder per launch, so a new run never resumes an old one.
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        trainer.with_checkpoint_config(
            CheckpointConfig(
                s3_uri=f"{cfg.s3_root}/checkpoints/{cfg.job_prefix}-{stamp}", local_path=CHECKPOINT_LOCAL_PATH
            )
        )
    return trainer


def debugger_settings(cfg: LaunchConfig, *, sagemaker_profiler: bool = False) -> dict[str, Any]:
    """Debugger rules, the ProfilerReport rule and system monitoring for ``TrainingJob.create``.

    Rule names and parameters come from ``smdebug_rulesconfig`` (what the built-in rules expect);
    the rule images from the SDK's per-region table. Tensor rules evaluate what an smdebug hook
    saved in the container; system monitoring and ProfilerReport need nothing in the container.
    """
    import smdebug_rulesconfig as rule_configs
    from sagemaker.core.debugger import get_rule_container_image_uri
    from sagemaker.core.shapes import (
        CollectionConfiguration,
        DebugHookConfig,
        DebugRuleConfiguration,
        ProfilerConfig,
        ProfilerRuleConfiguration,
    )

    output = f"{cfg.s3_root}/debug/{cfg.job_prefix}"
    rules = []
    collections: dict[str, dict[str, str]] = {}
    for builder in (rule_configs.loss_not_decreasing, rule_configs.overfit, rule_configs.vanishing_gradient):
        spec = builder()
        rule = spec["DebugRuleConfiguration"]
        name = rule["RuleConfigurationName"]
        rules.append(
            DebugRuleConfiguration(
                rule_configuration_name=name,
                rule_evaluator_image=get_rule_container_image_uri(name, cfg.region),
                rule_parameters={k: str(v) for k, v in rule.get("RuleParameters", {}).items()},
            )
        )
        for collection in spec.get("CollectionConfigurations", []):
            collections[collection["CollectionName"]] = dict(collection.get("CollectionParameters", {}))
    report = rule_configs.ProfilerReport()
    profiler_params: dict[str, str] | None = None
    if sagemaker_profiler:
        from sagemaker.core.debugger import Profiler

        profiler_params = {k: str(v) for k, v in Profiler().profiling_parameters.items()}
    profiler = ProfilerConfig(s3_output_path=f"{output}/profiler", profiling_interval_in_milliseconds=500)
    if profiler_params:
        profiler.profiling_parameters = profiler_params
    return {
        "debug_hook_config": DebugHookConfig(
            s3_output_path=f"{output}/tensors",
            collection_configurations=[
                CollectionConfiguration(collection_name=name, collection_parameters=params)
                for name, params in sorted(collections.items())
            ],
        ),
        "debug_rule_configurations": rules,
        "profiler_config": profiler,
        "profiler_rule_configurations": [
            ProfilerRuleConfiguration(
                rule_configuration_name=report.rule_name,
                rule_evaluator_image=get_rule_container_image_uri(report.rule_name, cfg.region),
                rule_parameters={k: str(v) for k, v in report.rule_parameters.items()},
            )
        ],
    }


def start_training_job(
    cfg: LaunchConfig,
    *,
    boto_session: boto3.Session | None = None,
    debugger: bool = True,
    sagemaker_profiler: bool = False,
) -> str:
    """Create one training job (with Debugger/Profiler settings) and return its name."""
    from sagemaker.core.resources import TrainingJob

    session = sagemaker_session(cfg, boto_session)
    with tempfile.TemporaryDirectory(prefix="bincount-src-") as tmp:
        source = cfg.source_uri or str(stage_source_dir(Path(tmp)))
        trainer = build_model_trainer(cfg, session, source)
        # ModelTrainer.train() would send exactly this request; we add the Debugger/Profiler fields
        # it cannot take. (_create_training_job_args is the SDK's own builder, also used by train().)
        request = trainer._create_training_job_args()
        if debugger:
            request.update(debugger_settings(cfg, sagemaker_profiler=sagemaker_profiler))
        job = TrainingJob.create(session=session.boto_session, region=cfg.region, **request)
    name = str(job.training_job_name if job is not None else request["training_job_name"])
    LOG.info("created training job %s", name)
    return name


def parse_range(spec: str) -> tuple[str, Any]:
    """``NAME=log:LO:HI`` | ``NAME=lin:LO:HI`` | ``NAME=int:LO:HI`` | ``NAME=cat:A,B,C``."""
    from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter

    name, _, body = spec.partition("=")
    kind, _, rest = body.partition(":")
    if not name or not rest:
        raise ValueError(f"bad range {spec!r}: use NAME=log:LO:HI, lin:LO:HI, int:LO:HI or cat:A,B")
    if kind == "cat":
        return name, CategoricalParameter(rest.split(","))
    lo, _, hi = rest.partition(":")
    if kind in ("log", "lin"):
        scaling = "Logarithmic" if kind == "log" else "Linear"
        return name, ContinuousParameter(float(lo), float(hi), scaling_type=scaling)
    if kind == "int":
        return name, IntegerParameter(int(lo), int(hi))
    raise ValueError(f"bad range kind {kind!r} in {spec!r}")


#: Names are train.py's flags (the container passes hyperparameters as ``--name value``).
DEFAULT_RANGES = (
    "lr=log:0.0001:0.003",
    "batch-size=cat:16,32,64",
    "backbone-lr-mult=log:0.03:0.5",
    "loss=cat:ce,smooth,gaussian,ordinal",
)


def build_tuner(
    trainer: Any,
    *,
    objective: str = "valid:accuracy",
    ranges: Sequence[str] = DEFAULT_RANGES,
    max_jobs: int = 12,
    max_parallel_jobs: int = 2,
    strategy: str = "Bayesian",
    early_stopping: str = "Auto",
    base_name: str | None = None,
) -> Any:
    from sagemaker.train.tuner import HyperparameterTuner

    objective = objective_name(objective)
    hyperparameter_ranges = dict(parse_range(spec) for spec in ranges)
    return HyperparameterTuner(
        model_trainer=trainer,
        objective_metric_name=objective,
        objective_type=OBJECTIVES[objective],
        hyperparameter_ranges=hyperparameter_ranges,
        metric_definitions=metric_definitions(),
        strategy=strategy,
        max_jobs=max_jobs,
        max_parallel_jobs=max_parallel_jobs,
        early_stopping_type=early_stopping,
        base_tuning_job_name=base_name,
    )


def start_tuning_job(
    cfg: LaunchConfig,
    *,
    boto_session: boto3.Session | None = None,
    objective: str = "valid:accuracy",
    ranges: Sequence[str] = DEFAULT_RANGES,
    max_jobs: int = 12,
    max_parallel_jobs: int = 2,
    strategy: str = "Bayesian",
) -> str:
    """Create the tuning job and return its name (≤ 32 characters, as AWS requires)."""
    session = sagemaker_session(cfg, boto_session)
    with tempfile.TemporaryDirectory(prefix="bincount-src-") as tmp:
        source = cfg.source_uri or str(stage_source_dir(Path(tmp)))
        # All training jobs of a tuning job would share one CheckpointConfig URI and resume each other's
        # checkpoints (train.py does not key them by job): tuning with --spot restarts a job from scratch.
        if cfg.use_spot:
            LOG.warning(
                "tuning with --spot: no checkpoints (shared by all jobs); an interrupted job restarts"
            )
        trainer = build_model_trainer(cfg, session, source, checkpoints=False)
        tuner = build_tuner(
            trainer,
            objective=objective,
            ranges=ranges,
            max_jobs=max_jobs,
            max_parallel_jobs=max_parallel_jobs,
            strategy=strategy,
            base_name=cfg.job_prefix,
        )
        tuner.tune(wait=False)
    name = str(tuner._current_job_name)
    LOG.info("created tuning job %s", name)
    return name


@dataclass(frozen=True)
class BestJob:
    training_job_name: str
    model_data_url: str
    objective: dict[str, Any] | None
    hyperparameters: dict[str, str]

    def sam_deploy_command(self) -> str:
        return f"sam deploy --parameter-overrides ModelDataUrl={self.model_data_url}"


def describe_best(
    client: Any, *, tuning_job_name: str | None = None, training_job_name: str | None = None
) -> BestJob:
    """The tuning job's best training job (or the named one) and where its ``model.tar.gz`` lives."""
    objective = None
    if tuning_job_name:
        tuning = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_job_name)
        best = tuning.get("BestTrainingJob")
        if not best:
            raise LookupError(
                f"tuning job {tuning_job_name} ({tuning['HyperParameterTuningJobStatus']}) has no best "
                "training job yet"
            )
        training_job_name = best["TrainingJobName"]
        objective = best.get("FinalHyperParameterTuningJobObjectiveMetric")
    if not training_job_name:
        raise ValueError("give a tuning job or a training job")
    job = client.describe_training_job(TrainingJobName=training_job_name)
    if job["TrainingJobStatus"] != "Completed":
        raise LookupError(f"training job {training_job_name} is {job['TrainingJobStatus']}, not Completed")
    hyperparameters = {
        k: v for k, v in job.get("HyperParameters", {}).items() if not k.startswith("sagemaker_")
    }
    return BestJob(training_job_name, job["ModelArtifacts"]["S3ModelArtifacts"], objective, hyperparameters)


# --- CLI ------------------------------------------------------------------------------------------
def _key_values(items: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"{what} {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.launcher", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--role", required=True, help="SageMaker execution role ARN")
        p.add_argument("--bucket", required=True, help="S3 bucket for code, output, checkpoints")
        p.add_argument("--prefix", default="bincount", help="key prefix in the bucket")
        p.add_argument("--region", default="us-east-1")
        p.add_argument(
            "--data",
            help="S3 URI of the data folder (channel 'training': a training.data split or count folders)",
        )
        p.add_argument(
            "--channel", action="append", default=[], metavar="NAME=S3URI", help="more input channels"
        )
        p.add_argument("--instance-type", default=DEFAULT_TRAINING_INSTANCE)
        p.add_argument("--instance-count", type=int, default=1)
        p.add_argument("--volume-size", type=int, default=30, help="GB")
        p.add_argument("--max-run", type=int, default=3 * 3600, help="seconds")
        p.add_argument("--spot", action="store_true", help="managed spot training with S3 checkpoints")
        p.add_argument("--max-wait", type=int, help="seconds, spot only (default 2 x --max-run)")
        p.add_argument("--job-prefix", default="bincount")
        p.add_argument("--framework-version", default=DEFAULT_FRAMEWORK_VERSION)
        p.add_argument("--py-version", default=DEFAULT_PY_VERSION)
        p.add_argument("--image-uri", help="override the PyTorch training image")
        p.add_argument("--source-uri", help="pre-uploaded sourcedir.tar.gz on S3 (default: stage the repo)")
        p.add_argument(
            "--hp",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="hyperparameter passed as --NAME VALUE",
        )
        p.add_argument(
            "--dry-run", action="store_true", help="build offline and print the request, send nothing"
        )

    train = sub.add_parser("train", help="one training job with Debugger rules and the profiler report")
    common(train)
    train.add_argument("--no-debugger", action="store_true", help="leave out Debugger/Profiler settings")
    train.add_argument("--sagemaker-profiler", action="store_true", help="also enable SageMaker Profiler")

    tune = sub.add_parser("tune", help="a hyperparameter tuning job")
    common(tune)
    tune.add_argument(
        "--objective", type=objective_name, default="valid:accuracy", help=f"one of {', '.join(OBJECTIVES)}"
    )
    tune.add_argument(
        "--range",
        action="append",
        default=None,
        metavar="NAME=KIND:...",
        help=f"default: {' '.join(DEFAULT_RANGES)}",
    )
    tune.add_argument("--max-jobs", type=int, default=12)
    tune.add_argument("--max-parallel-jobs", type=int, default=2)
    tune.add_argument("--strategy", default="Bayesian", choices=["Bayesian", "Random", "Hyperband", "Grid"])

    best = sub.add_parser("best", help="print the best job's ModelDataUrl for sam deploy")
    group = best.add_mutually_exclusive_group(required=True)
    group.add_argument("--tuning-job")
    group.add_argument("--training-job")
    best.add_argument("--region", default="us-east-1")
    best.add_argument("--json", action="store_true")
    return parser


def config_from_args(args: argparse.Namespace) -> LaunchConfig:
    channels = _key_values(args.channel, "--channel")
    if args.data:
        channels = {"training": args.data, **channels}
    return LaunchConfig(
        role=args.role,
        bucket=args.bucket,
        prefix=args.prefix,
        region=args.region,
        channels=channels,
        job_prefix=args.job_prefix,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        volume_size_gb=args.volume_size,
        max_run_s=args.max_run,
        use_spot=args.spot,
        max_wait_s=args.max_wait,
        framework_version=args.framework_version,
        py_version=args.py_version,
        hyperparameters=_key_values(args.hp, "--hp"),
        image_uri=args.image_uri,
        source_uri=args.source_uri,
    )


def _json_default(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def main(argv: Sequence[str] | None = None, *, boto_session: boto3.Session | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if args.command == "best":
        import boto3

        client = (boto_session or boto3.Session(region_name=args.region)).client(
            "sagemaker", region_name=args.region
        )
        found = describe_best(client, tuning_job_name=args.tuning_job, training_job_name=args.training_job)
        if args.json:
            print(
                json.dumps(
                    {**found.__dict__, "sam_deploy": found.sam_deploy_command()}, default=_json_default
                )
            )
        else:
            print(f"best training job: {found.training_job_name}")
            if found.objective:
                print(f"objective: {found.objective.get('MetricName')} = {found.objective.get('Value')}")
            print(f"hyperparameters: {json.dumps(found.hyperparameters, sort_keys=True)}")
            print(f"ModelDataUrl: {found.model_data_url}")
            print(found.sam_deploy_command())
        return 0

    cfg = config_from_args(args)
    recorder = None
    if args.dry_run:
        from training.sagemaker_capture import recording_session

        # The SDK checks the role with iam:SimulatePrincipalPolicy; offline there is no IAM to ask.
        os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
        boto_session, recorder = recording_session(cfg.region)
    if args.command == "train":
        name = start_training_job(
            cfg,
            boto_session=boto_session,
            debugger=not args.no_debugger,
            sagemaker_profiler=args.sagemaker_profiler,
        )
        operation = "CreateTrainingJob"
    else:
        name = start_tuning_job(
            cfg,
            boto_session=boto_session,
            objective=args.objective,
            ranges=args.range or DEFAULT_RANGES,
            max_jobs=args.max_jobs,
            max_parallel_jobs=args.max_parallel_jobs,
            strategy=args.strategy,
        )
        operation = "CreateHyperParameterTuningJob"
    if recorder is not None:
        print(json.dumps(recorder.last(operation), indent=2, sort_keys=True, default=_json_default))
        print(f"dry run: {operation} {name} was NOT sent", file=sys.stderr)
    else:
        print(name)
    return 0


def hyperparameter_flags(hyperparameters: Mapping[str, str]) -> list[str]:
    """How the container hands hyperparameters to ``train.py``: ``--name value`` pairs."""
    flags: list[str] = []
    for key, value in hyperparameters.items():
        if key.startswith("sagemaker_"):
            continue
        flags += [f"--{key}", str(value)]
    return flags


if __name__ == "__main__":
    sys.exit(main())
