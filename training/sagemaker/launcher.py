"""Launch training, tuning and retraining of the counting model on SageMaker (Python SDK v3).

``python -m training.sagemaker.launcher train|tune|best ...``

- ``train``: one training job from ``training/train.py`` with the shipped recipe's hyperparameters
  (``--hp NAME=VALUE`` overrides one); optional managed spot training with checkpoints. SageMaker
  Debugger is closed to new customers (from 2026-07-30), so no Debugger rules are sent unless
  ``--debugger`` asks for them (accounts that already use it); its tensor rules would judge nothing
  anyway, the smdebug hook they read cannot be installed next to our protobuf, and the instance's
  system metrics are in CloudWatch without it. ``ModelTrainer`` (v3) takes no Debugger settings, so
  with ``--debugger`` the request goes through ``sagemaker.core.resources.TrainingJob.create``.
- ``tune``: a ``HyperparameterTuner`` over the same ``ModelTrainer`` (learning rate log-scaled, batch
  size, backbone lr multiplier, loss, or any ``--range``). The default objective is
  ``best:valid_score``, the score of the checkpoint the job keeps (the trainer's last line), not the
  last epoch's. Hyperband gets early stopping ``Off`` and a static ``epochs``; Grid categorical
  ranges only; anything AWS would reject is refused locally with the reason.
- ``best``: the best training job of a tuning job (or any training job) and its
  ``ModelArtifacts.S3ModelArtifacts``, printed with the commands that deploy it (copy into the
  artifact bucket, ``ModelArtifactKey`` in samconfig.toml, ``sam deploy --config-env``).

``--dry-run`` builds everything offline (no AWS call leaves the process: see
``training/sagemaker/sagemaker_capture.py``) and prints the exact CreateTrainingJob /
CreateHyperParameterTuningJob request. The SageMaker SDK is imported lazily: it is slow to import.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import NotFound, UsageError, one_line_errors
from training.sagemaker.launch_policy import (
    TRAINING_NAME_MAX,
    TUNING_NAME_MAX,
    StrategySettings,
    shipped_recipe,
    strategy_settings,
    unique_job_name,
)

if TYPE_CHECKING:
    import boto3

LOG = logging.getLogger("training.sagemaker.launcher")

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRY_SCRIPT = "sm_entry.py"
DEFAULT_TRAINING_INSTANCE = "ml.g4dn.xlarge"
DEFAULT_FRAMEWORK_VERSION = "2.8"  # newest PyTorch training container on Python 3.12
DEFAULT_PY_VERSION = "py312"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
#: Container dependencies beyond the PyTorch image: read from pyproject's ``model`` group minus what
#: the image already ships (boto3 and botocore with the SageMaker training toolkit it runs on).
_IMAGE_PROVIDES = ("torch", "torchvision", "numpy", "pillow", "onnx", "onnxruntime", "boto3", "botocore")


# --- metric definitions -------------------------------------------------------------------------
# One source of truth: training.reporting.report holds the line the trainer prints once per epoch
# (METRIC_LINE_FORMAT) and its regexes (METRIC_DEFINITIONS); SageMaker scrapes the job's log with
# them and the tuner reads its objective from them. Names look like ``valid:accuracy`` (CloudWatch style).
#: The kept checkpoint's validation score, printed once as the trainer's last metric line
#: (``best_valid_score=<float>``, named ``best:valid_score`` in training.reporting.report.METRIC_DEFINITIONS):
#: the tuner's objective is the *last* value its regex captures, so only this line makes the
#: objective the model the job actually keeps.
BEST_OBJECTIVE = "best:valid_score"


def metric_definitions() -> list[dict[str, str]]:
    """``[{"Name": ..., "Regex": ...}]`` as ``training/reporting/report.py`` defines them, plus the
    objective's."""
    from training.reporting.report import METRIC_DEFINITIONS

    found = [{"Name": str(m["Name"]), "Regex": str(m["Regex"])} for m in METRIC_DEFINITIONS]
    if all(m["Name"] != BEST_OBJECTIVE for m in found):  # the trainer and the objective drifted apart
        raise LookupError(
            f"training.reporting.report.METRIC_DEFINITIONS lacks the objective {BEST_OBJECTIVE}"
        )
    return found


#: Tuning objectives and their direction; ``best:valid_score`` is the kept checkpoint's score.
OBJECTIVES: dict[str, str] = {
    BEST_OBJECTIVE: "Maximize",
    "valid:accuracy": "Maximize",
    "valid:rmse": "Minimize",
    "valid:mae": "Minimize",
    "valid:score": "Maximize",
}


def objective_name(text: str) -> str:
    """Accept ``valid_accuracy`` as well as the metric's own name ``valid:accuracy``."""
    name = text if ":" in text else text.replace("_", ":", 1)
    if name not in OBJECTIVES:
        raise argparse.ArgumentTypeError(f"objective {text!r}: choose one of {', '.join(OBJECTIVES)}")
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
        """Everything checkable offline, as one-line :class:`UsageError` s, before any AWS call."""
        if not self.role.startswith("arn:"):
            raise UsageError(
                f"--role must be an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME), got {self.role!r}"
            )
        for name, uri in self.channels.items():
            if not uri.startswith("s3://"):
                raise UsageError(
                    f"channel {name!r}: {uri!r} is not an s3:// URI; upload it first "
                    f"(aws s3 sync {uri} s3://{self.bucket}/data/{name}) and pass that URI"
                )
        if not self.channels:
            raise UsageError("no input data: give --data s3://BUCKET/PREFIX (or --channel NAME=s3://...)")
        for flag, value in (
            ("--instance-count", self.instance_count),
            ("--volume-size", self.volume_size_gb),
            ("--max-run", self.max_run_s),
        ):
            if value < 1:
                raise UsageError(f"{flag} {value}: give a whole number above 0")
        if self.use_spot:
            wait = self.max_wait_s or self.max_run_s * 2
            if wait < self.max_run_s:
                raise UsageError("--max-wait must be at least --max-run for spot training")


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

Generated by training/sagemaker/launcher.py; the container runs it from the source root with the
hyperparameters as ``--name value`` flags.
"""
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
runpy.run_module("training.train", run_name="__main__", alter_sys=True)
'''


#: Single torch-free modules the staged packages import, from their one home elsewhere in the
#: repository: the image suffixes (training.data), the count ranges' rule
#: (training.uncertainty.discrepancy) and one-line errors and atomic writes (training.*).
#: Only these files travel, not their packages: the Lambda code and the operator CLI stay home.
STAGED_FILES = (
    ("functions/bincount/__init__.py", "bincount/__init__.py"),
    ("functions/bincount/image_formats.py", "bincount/image_formats.py"),
    ("functions/bincount/count_ranges.py", "bincount/count_ranges.py"),
    ("common/__init__.py", "common/__init__.py"),
    ("common/errors.py", "common/errors.py"),
    ("common/files.py", "common/files.py"),
    ("common/malloc.py", "common/malloc.py"),
)


def stage_source_dir(dest: Path, repo_root: Path = REPO_ROOT) -> Path:
    """Copy what the training container needs (``training/``, ``model/``) plus the entry shim.

    Only these two packages and the few :data:`STAGED_FILES` they import travel: the rest of the
    repository (Lambdas, tests, build output, the virtualenv) has no business in a training job and
    would slow every upload. ``tests/training/test_source_dir.py`` imports the staged tree on its
    own, so a new import of an unstaged module fails there rather than in the container.
    """
    # model.onnx: the shipped weights' exported graph, for packing without torch; training never reads it
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", "*.onnx")
    for package in ("training", "model"):
        src = repo_root / package
        if not (src / "train.py").exists() and package == "training":
            LOG.warning("training/train.py is missing in %s: the job would fail", repo_root)
        shutil.copytree(src, dest / package, ignore=ignore, dirs_exist_ok=True)
    for source, target in STAGED_FILES:
        (dest / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_root / source, dest / target)
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


def build_model_trainer(
    cfg: LaunchConfig, session: Any, source_dir: str, *, checkpoints: bool = True, job_name: str = ""
) -> Any:
    """A ``ModelTrainer`` for ``training/train.py``: image, compute, channels, metrics, checkpoints."""
    from sagemaker.core.shapes import CheckpointConfig, MetricDefinition, OutputDataConfig
    from sagemaker.core.training.configs import Compute, SourceCode
    from sagemaker.train import ModelTrainer

    cfg.validate()
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
        stopping_condition=_stopping_condition(cfg),
        hyperparameters=dict(cfg.hyperparameters),
        input_data_config=_input_channels(cfg),
        output_data_config=OutputDataConfig(s3_output_path=f"{cfg.s3_root}/output"),
        environment=dict(cfg.environment) or None,
    )
    trainer.with_metric_definitions(
        [MetricDefinition(name=m["Name"], regex=m["Regex"]) for m in metric_definitions()]
    )
    if cfg.use_spot and checkpoints:
        # Spot capacity can vanish mid-epoch: SageMaker syncs local_path <-> s3_uri and train.py resumes
        # from the newest checkpoint there. One folder per launch, so a new run never resumes an old one.
        folder = job_name or unique_job_name(cfg.job_prefix)
        trainer.with_checkpoint_config(
            CheckpointConfig(s3_uri=f"{cfg.s3_root}/checkpoints/{folder}", local_path=CHECKPOINT_LOCAL_PATH)
        )
    return trainer


def _stopping_condition(cfg: LaunchConfig) -> Any:
    """``--max-run``; spot jobs also wait for capacity up to ``--max-wait`` (default twice the run)."""
    from sagemaker.core.training.configs import StoppingCondition

    stopping = StoppingCondition(max_runtime_in_seconds=cfg.max_run_s)
    if cfg.use_spot:
        stopping.max_wait_time_in_seconds = cfg.max_wait_s or cfg.max_run_s * 2
    return stopping


def _input_channels(cfg: LaunchConfig) -> list[Any]:
    """One fully replicated S3 prefix channel per ``--data``/``--channel``, copied to the instance.

    Channel shapes, not ``InputData``: the tuner copies these verbatim into its job definition."""
    from sagemaker.core.shapes import Channel, DataSource, S3DataSource

    return [
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
    ]


def debugger_settings(cfg: LaunchConfig, *, sagemaker_profiler: bool = False) -> dict[str, Any]:
    """Debugger rules, the ProfilerReport rule and system monitoring for ``TrainingJob.create``.

    Opt-in only (``--debugger``): SageMaker Debugger is closed to new customers since 2026-07-30,
    and an account without it has such a request refused. Rule names and parameters come from
    ``smdebug_rulesconfig`` (what the built-in rules expect); the rule images from the SDK's
    per-region table. The tensor rules evaluate what an smdebug hook saved in the container, and
    smdebug cannot be installed here (its protobuf pin): they would judge nothing. System
    monitoring and ProfilerReport need nothing in the container (and CloudWatch has the
    instance's metrics without Debugger).
    """
    output = f"{cfg.s3_root}/debug/{cfg.job_prefix}"
    rules, hook = _debug_rules_and_hook(cfg, f"{output}/tensors")
    return {
        "debug_hook_config": hook,
        "debug_rule_configurations": rules,
        "profiler_config": _profiler_config(f"{output}/profiler", sagemaker_profiler),
        "profiler_rule_configurations": [_profiler_report_rule(cfg)],
    }


def _debug_rules_and_hook(cfg: LaunchConfig, tensors_uri: str) -> tuple[list[Any], Any]:
    """The built-in tensor rules, and the hook configuration saving the collections they read."""
    import smdebug_rulesconfig as rule_configs
    from sagemaker.core.debugger import get_rule_container_image_uri
    from sagemaker.core.shapes import CollectionConfiguration, DebugHookConfig, DebugRuleConfiguration

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
    hook = DebugHookConfig(
        s3_output_path=tensors_uri,
        collection_configurations=[
            CollectionConfiguration(collection_name=name, collection_parameters=params)
            for name, params in sorted(collections.items())
        ],
    )
    return rules, hook


def _profiler_config(profiler_uri: str, sagemaker_profiler: bool) -> Any:
    """System monitoring every 500 ms; with ``sagemaker_profiler`` the SageMaker Profiler's parameters."""
    from sagemaker.core.shapes import ProfilerConfig

    profiler = ProfilerConfig(s3_output_path=profiler_uri, profiling_interval_in_milliseconds=500)
    if sagemaker_profiler:
        from sagemaker.core.debugger import Profiler

        profiler_params = {k: str(v) for k, v in Profiler().profiling_parameters.items()}
        if profiler_params:
            profiler.profiling_parameters = profiler_params
    return profiler


def _profiler_report_rule(cfg: LaunchConfig) -> Any:
    """The built-in ProfilerReport rule (it reads the system metrics, nothing in the container)."""
    import smdebug_rulesconfig as rule_configs
    from sagemaker.core.debugger import get_rule_container_image_uri
    from sagemaker.core.shapes import ProfilerRuleConfiguration

    report = rule_configs.ProfilerReport()
    return ProfilerRuleConfiguration(
        rule_configuration_name=report.rule_name,
        rule_evaluator_image=get_rule_container_image_uri(report.rule_name, cfg.region),
        rule_parameters={k: str(v) for k, v in report.rule_parameters.items()},
    )


def start_training_job(
    cfg: LaunchConfig,
    *,
    boto_session: boto3.Session | None = None,
    debugger: bool = False,
    sagemaker_profiler: bool = False,
) -> str:
    """Create one training job (Debugger/Profiler settings only with ``debugger``); its name."""
    from sagemaker.core.resources import TrainingJob

    cfg.validate()
    session = sagemaker_session(cfg, boto_session)
    job_name = unique_job_name(cfg.job_prefix, TRAINING_NAME_MAX)
    with tempfile.TemporaryDirectory(prefix="bincount-src-") as tmp:
        source = cfg.source_uri or str(stage_source_dir(Path(tmp)))
        trainer = build_model_trainer(cfg, session, source, job_name=job_name)
        # ModelTrainer.train() would send exactly this request, named by the SDK's timestamp; we name
        # it ourselves (unique within a minute) and add the Debugger fields it cannot take.
        # (_create_training_job_args is the SDK's own builder, also used by train().)
        request = trainer._create_training_job_args()
        request["training_job_name"] = job_name
        if debugger:
            request.update(debugger_settings(cfg, sagemaker_profiler=sagemaker_profiler))
        job = TrainingJob.create(session=session.boto_session, region=cfg.region, **request)
    name = str(job.training_job_name if job is not None else request["training_job_name"])
    LOG.info("created training job %s", name)
    return name


RANGE_FORMS = "NAME=log:LO:HI, NAME=lin:LO:HI, NAME=int:LO:HI or NAME=cat:A,B,C"


def range_kind(spec: str) -> tuple[str, str, str]:
    """``(name, kind, rest)`` of a ``--range`` spec, checked without the SDK."""
    name, _, body = spec.partition("=")
    kind, _, rest = body.partition(":")
    if not name or not rest or kind not in ("log", "lin", "int", "cat"):
        raise UsageError(f"--range {spec!r}: use {RANGE_FORMS}")
    if kind != "cat":
        lo, _, hi = rest.partition(":")
        try:
            low, high = (int(lo), int(hi)) if kind == "int" else (float(lo), float(hi))
        except ValueError:
            raise UsageError(f"--range {spec!r}: LO and HI must be numbers ({RANGE_FORMS})") from None
        if low >= high or (kind == "log" and low <= 0):
            raise UsageError(
                f"--range {spec!r}: needs LO < HI{' and LO > 0 (log scale)' if kind == 'log' else ''}"
            )
    return name, kind, rest


def parse_range(spec: str) -> tuple[str, Any]:
    """``NAME=log:LO:HI`` | ``NAME=lin:LO:HI`` | ``NAME=int:LO:HI`` | ``NAME=cat:A,B,C``."""
    from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter

    name, kind, rest = range_kind(spec)
    if kind == "cat":
        return name, CategoricalParameter(rest.split(","))
    lo, _, hi = rest.partition(":")
    if kind == "int":
        return name, IntegerParameter(int(lo), int(hi))
    scaling = "Logarithmic" if kind == "log" else "Linear"
    return name, ContinuousParameter(float(lo), float(hi), scaling_type=scaling)


def tuning_settings(
    strategy: str, ranges: Sequence[str], static: Mapping[str, str], max_jobs: int | None
) -> StrategySettings:
    """What ``strategy`` needs, checked against the ranges and static hyperparameters (offline)."""
    kinds = {name: kind for name, kind, _ in map(range_kind, ranges)}
    sizes = {name: len(rest.split(",")) for name, kind, rest in map(range_kind, ranges) if kind == "cat"}
    tuned_static = {k: v for k, v in static.items() if k not in kinds}
    return strategy_settings(
        strategy, range_kinds=kinds, categorical_sizes=sizes, static=tuned_static, max_jobs=max_jobs
    )


#: Names are train.py's flags (the container passes hyperparameters as ``--name value``).
DEFAULT_RANGES = (
    "lr=log:0.0001:0.003",
    "batch-size=cat:16,32,64",
    "backbone-lr-mult=log:0.03:0.5",
    "loss=cat:ce,smooth,gaussian,ordinal",
)


def build_tuner(
    trainer: Any,
    settings: StrategySettings,
    *,
    objective: str = BEST_OBJECTIVE,
    ranges: Sequence[str] = DEFAULT_RANGES,
    max_parallel_jobs: int = 2,
    base_name: str | None = None,
) -> Any:
    from sagemaker.core.shapes import HyperbandStrategyConfig, HyperParameterTuningJobStrategyConfig
    from sagemaker.train.tuner import HyperparameterTuner

    objective = objective_name(objective)
    hyperparameter_ranges = dict(parse_range(spec) for spec in ranges)
    strategy_config = None
    if settings.hyperband_max_epochs is not None:
        strategy_config = HyperParameterTuningJobStrategyConfig(
            hyperband_strategy_config=HyperbandStrategyConfig(
                min_resource=1, max_resource=settings.hyperband_max_epochs
            )
        )
    return HyperparameterTuner(
        model_trainer=trainer,
        objective_metric_name=objective,
        objective_type=OBJECTIVES[objective],
        hyperparameter_ranges=hyperparameter_ranges,
        metric_definitions=metric_definitions(),
        strategy=settings.strategy,
        strategy_config=strategy_config,
        max_jobs=settings.max_jobs,
        max_parallel_jobs=max_parallel_jobs,
        early_stopping_type=settings.early_stopping,
        base_tuning_job_name=base_name,
    )


def start_tuning_job(
    cfg: LaunchConfig,
    *,
    boto_session: boto3.Session | None = None,
    objective: str = BEST_OBJECTIVE,
    ranges: Sequence[str] = DEFAULT_RANGES,
    max_jobs: int | None = None,
    max_parallel_jobs: int = 2,
    strategy: str = "Bayesian",
) -> str:
    """Create the tuning job and return its name (≤ 32 characters, as AWS requires).

    The tuned names leave the static hyperparameters (a range wins over the recipe's value)."""
    cfg.validate()
    settings = tuning_settings(strategy, ranges, cfg.hyperparameters, max_jobs)
    tuned = {name for name, _, _ in map(range_kind, ranges)}
    cfg = dataclasses.replace(
        cfg, hyperparameters={k: v for k, v in cfg.hyperparameters.items() if k not in tuned}
    )
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
            settings,
            objective=objective,
            ranges=ranges,
            max_parallel_jobs=max_parallel_jobs,
            base_name=cfg.job_prefix,
        )
        tuner.tune(job_name=unique_job_name(cfg.job_prefix, TUNING_NAME_MAX), wait=False)
    name = str(tuner._current_job_name)
    LOG.info("created tuning job %s", name)
    return name


@dataclass(frozen=True)
class BestJob:
    training_job_name: str
    model_data_url: str
    objective: dict[str, Any] | None
    hyperparameters: dict[str, str]

    @property
    def artifact_key(self) -> str:
        """Where the stack's ModelArtifactKey expects it in bincount-artifacts-<account>-<region>."""
        return f"models/{self.training_job_name}/model.tar.gz"

    def sam_deploy_command(self) -> str:
        """Copy into the artifact bucket, name it in samconfig.toml, deploy (README: Deploying)."""
        return (
            f"aws s3 cp {self.model_data_url} s3://bincount-artifacts-$ACCOUNT-$AWS_REGION/{self.artifact_key}\n"
            f"# samconfig.toml, your environment's parameter_overrides: "
            f'"ModelArtifactKey={self.artifact_key}"\n'
            "sam build && sam deploy --config-env dev"
        )


def describe_best(
    client: Any, *, tuning_job_name: str | None = None, training_job_name: str | None = None
) -> BestJob:
    """The tuning job's best training job (or the named one) and where its ``model.tar.gz`` lives."""
    objective = None
    if tuning_job_name:
        tuning = client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_job_name)
        best = tuning.get("BestTrainingJob")
        if not best:
            raise NotFound(
                f"tuning job {tuning_job_name} ({tuning['HyperParameterTuningJobStatus']}) has no best "
                "training job yet"
            )
        training_job_name = best["TrainingJobName"]
        objective = best.get("FinalHyperParameterTuningJobObjectiveMetric")
    if not training_job_name:
        raise UsageError("give --tuning-job NAME or --training-job NAME")
    job = client.describe_training_job(TrainingJobName=training_job_name)
    if job["TrainingJobStatus"] != "Completed":
        raise NotFound(f"training job {training_job_name} is {job['TrainingJobStatus']}, not Completed")
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
            raise UsageError(f"{what} {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


_EXAMPLES = {
    "train": """example:
  python -m training.sagemaker.launcher train --role arn:aws:iam::123456789012:role/SageMakerRole \\
      --bucket my-ml-bucket --data s3://my-ml-bucket/abid-train --hp epochs=20 --dry-run""",
    "tune": """example:
  python -m training.sagemaker.launcher tune --role arn:aws:iam::123456789012:role/SageMakerRole \\
      --bucket my-ml-bucket --data s3://my-ml-bucket/abid-train --strategy Hyperband --max-jobs 20""",
    "best": """example:
  python -m training.sagemaker.launcher best --tuning-job bincount-261201-145102-a3f9""",
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (where it has one); examples kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


def _subparser(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text, epilog=_EXAMPLES[name], formatter_class=_HelpFormatter
    )
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", required=True, help="SageMaker execution role ARN")
    p.add_argument("--bucket", required=True, help="S3 bucket for code, output, checkpoints")
    p.add_argument("--prefix", default="bincount", help="key prefix in the bucket")
    p.add_argument("--region", default="us-east-1", help="AWS region")
    p.add_argument(
        "--data",
        help="S3 URI of the data folder (channel 'training': a training.data split or count folders)",
    )
    p.add_argument("--channel", action="append", default=[], metavar="NAME=S3URI", help="more input channels")
    p.add_argument("--instance-type", default=DEFAULT_TRAINING_INSTANCE, help="T4 GPU: fp16 mixed precision")
    p.add_argument("--instance-count", type=int, default=1, help="instances per job")
    p.add_argument("--volume-size", type=int, default=30, help="GB")
    p.add_argument("--max-run", type=int, default=3 * 3600, help="seconds")
    p.add_argument("--spot", action="store_true", help="managed spot training with S3 checkpoints")
    p.add_argument("--max-wait", type=int, help="seconds, spot only (default: 2 x --max-run)")
    p.add_argument("--job-prefix", default="bincount", help="job names: PREFIX-yymmdd-HHMMSS-xxxx")
    p.add_argument(
        "--framework-version", default=DEFAULT_FRAMEWORK_VERSION, help="PyTorch training container version"
    )
    p.add_argument("--py-version", default=DEFAULT_PY_VERSION, help="Python of the container")
    p.add_argument("--image-uri", help="override the PyTorch training image")
    p.add_argument(
        "--source-uri", help="pre-uploaded sourcedir.tar.gz on S3 (default: stage training/ and model/)"
    )
    p.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="hyperparameter passed to train.py as --NAME VALUE, over the shipped recipe "
        f"({' '.join(f'{k}={v}' for k, v in _recipe_or_empty().items())})",
    )
    p.add_argument("--dry-run", action="store_true", help="build offline and print the request, send nothing")


def _recipe() -> dict[str, str]:
    try:
        return shipped_recipe()
    except (OSError, LookupError, ValueError) as error:
        raise UsageError(f"cannot read the shipped recipe ({error}); run from the repository") from error


def _recipe_or_empty() -> dict[str, str]:
    try:
        return shipped_recipe()
    except (OSError, LookupError, ValueError):
        return {}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.sagemaker.launcher",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"defaults: instance {DEFAULT_TRAINING_INSTANCE} (one T4 GPU), PyTorch training container "
        f"{DEFAULT_FRAMEWORK_VERSION} ({DEFAULT_PY_VERSION}), tuning objective {BEST_OBJECTIVE}\n"
        "each command's own options and defaults: python -m training.sagemaker.launcher COMMAND --help\n\n"
        + _EXAMPLES["train"],
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,tune,best}")
    _add_train_command(sub)
    _add_tune_command(sub)
    _add_best_command(sub)
    return parser


def _add_train_command(sub: Any) -> None:
    train = _subparser(
        sub, "train", "one SageMaker training job (the shipped recipe unless --hp says otherwise)"
    )
    _common(train)
    train.add_argument(
        "--debugger",
        action="store_true",
        help="add SageMaker Debugger rules and the profiler report (accounts that had Debugger before "
        "2026-07-30 only; closed to new customers)",
    )
    train.add_argument(
        "--no-debugger", action="store_true", help=argparse.SUPPRESS
    )  # the old default's opt-out
    train.add_argument(
        "--sagemaker-profiler", action="store_true", help="with --debugger: SageMaker Profiler"
    )


def _add_tune_command(sub: Any) -> None:
    tune = _subparser(sub, "tune", "a hyperparameter tuning job over train.py")
    _common(tune)
    tune.add_argument(
        "--objective",
        type=objective_name,
        default=BEST_OBJECTIVE,
        help=f"one of {', '.join(OBJECTIVES)}; {BEST_OBJECTIVE} is the kept checkpoint's score",
    )
    tune.add_argument(
        "--range",
        action="append",
        default=None,
        metavar="NAME=KIND:...",
        help=f"default: {' '.join(DEFAULT_RANGES)}",
    )
    tune.add_argument("--max-jobs", type=int, default=None, help="default 12; Grid: every combination")
    tune.add_argument("--max-parallel-jobs", type=int, default=2, help="jobs running at once")
    tune.add_argument(
        "--strategy",
        default="Bayesian",
        choices=["Bayesian", "Random", "Hyperband", "Grid"],
        help="Hyperband: early stopping Off, static epochs; Grid: categorical ranges only",
    )


def _add_best_command(sub: Any) -> None:
    best = _subparser(sub, "best", "print the best job's model artifact and how to deploy it")
    group = best.add_mutually_exclusive_group(required=True)
    group.add_argument("--tuning-job")
    group.add_argument("--training-job")
    best.add_argument("--region", default="us-east-1", help="AWS region")
    best.add_argument("--json", action="store_true")


def config_from_args(args: argparse.Namespace) -> LaunchConfig:
    """The launch configuration; hyperparameters are the shipped recipe with ``--hp`` over it."""
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
        hyperparameters={**_recipe(), **_key_values(args.hp, "--hp")},
        image_uri=args.image_uri,
        source_uri=args.source_uri,
    )


def _json_default(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _print_best(args: argparse.Namespace, boto_session: boto3.Session | None) -> int:
    import boto3

    client = (boto_session or boto3.Session(region_name=args.region)).client(
        "sagemaker", region_name=args.region
    )
    found = describe_best(client, tuning_job_name=args.tuning_job, training_job_name=args.training_job)
    if args.json:
        print(json.dumps({**found.__dict__, "sam_deploy": found.sam_deploy_command()}, default=_json_default))
        return 0
    print(f"best training job: {found.training_job_name}")
    if found.objective:
        print(f"objective: {found.objective.get('MetricName')} = {found.objective.get('Value')}")
    print(f"hyperparameters: {json.dumps(found.hyperparameters, sort_keys=True)}")
    print(f"ModelDataUrl: {found.model_data_url}")
    print(found.sam_deploy_command())
    return 0


@one_line_errors("training.sagemaker.launcher")
def main(argv: Sequence[str] | None = None, *, boto_session: boto3.Session | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    if args.command == "best":
        return _print_best(args, boto_session)

    cfg = config_from_args(args)
    cfg.validate()
    if args.command == "tune":
        ranges = args.range or DEFAULT_RANGES
        tuning_settings(args.strategy, ranges, cfg.hyperparameters, args.max_jobs)  # refuse before staging
    recorder = None
    if args.dry_run:
        from training.sagemaker.sagemaker_capture import recording_session

        # The SDK checks the role with iam:SimulatePrincipalPolicy; offline there is no IAM to ask.
        os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
        boto_session, recorder = recording_session(cfg.region)
    if args.command == "train":
        name = start_training_job(
            cfg,
            boto_session=boto_session,
            debugger=args.debugger and not args.no_debugger,
            sagemaker_profiler=args.sagemaker_profiler,
        )
        operation = "CreateTrainingJob"
    else:
        name = start_tuning_job(
            cfg,
            boto_session=boto_session,
            objective=args.objective,
            ranges=ranges,
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
