"""Record the AWS requests the SageMaker SDK sends, and optionally answer them without AWS.

The launcher's ``--dry-run`` and its tests need the *exact* CreateTrainingJob and
CreateHyperParameterTuningJob requests, but the SDK also calls S3 (source code and driver uploads,
the bucket check) and STS along the way. A :class:`RequestRecorder` hooks into a boto3 session's
event system: every API call's parameters are recorded after botocore validated them against the
service model (so a captured request is one AWS would accept in shape), and in offline mode each call
is answered from a small table of canned responses instead of reaching the network. Services named
in ``passthrough`` go on to their real endpoint (in tests: moto's in-process S3).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse, HTTPHeaders

FAKE_ACCOUNT = "123456789012"


@dataclass
class RecordedCall:
    service: str
    operation: str
    params: dict[str, Any]


class UnexpectedCallError(RuntimeError):
    """An offline call the recorder has no canned answer for: better to fail than to invent one."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class RequestRecorder:
    """Install on a boto3 session *before* any client is created from it (clients copy the hooks)."""

    offline: bool = True
    passthrough: frozenset[str] = frozenset()
    calls: list[RecordedCall] = field(default_factory=list)
    region: str = "us-east-1"

    def install(self, session: boto3.Session) -> RequestRecorder:
        self.region = session.region_name or self.region
        session.events.register("before-call", self._before_call)
        return self

    def requests(self, operation: str) -> list[dict[str, Any]]:
        """Parameters of every recorded call of ``operation`` (e.g. ``CreateTrainingJob``)."""
        return [call.params for call in self.calls if call.operation == operation]

    def last(self, operation: str) -> dict[str, Any]:
        found = self.requests(operation)
        if not found:
            raise LookupError(f"no {operation} call was recorded (saw {[c.operation for c in self.calls]})")
        return found[-1]

    def _before_call(self, model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> Any:
        service = model.service_model.service_name
        operation = model.name
        api_params = context.get("recorder_api_params", {})
        self.calls.append(RecordedCall(service, operation, api_params))
        if not self.offline or service in self.passthrough:
            return None
        answer = self._answers().get((service, operation))
        if answer is None:
            raise UnexpectedCallError(f"offline: no canned answer for {service}.{operation}")
        return AWSResponse(
            url="https://offline.invalid/", status_code=200, headers=HTTPHeaders(), raw=None
        ), answer(api_params)

    def _answers(self) -> dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]]:
        arn = f"arn:aws:sagemaker:{self.region}:{FAKE_ACCOUNT}"
        return {
            ("sts", "GetCallerIdentity"): lambda p: {
                "Account": FAKE_ACCOUNT,
                "Arn": f"arn:aws:iam::{FAKE_ACCOUNT}:user/offline",
                "UserId": "OFFLINE",
            },
            ("s3", "ListBuckets"): lambda p: {"Buckets": []},
            ("s3", "HeadBucket"): lambda p: {},
            ("s3", "ListObjectsV2"): lambda p: {"KeyCount": 0, "IsTruncated": False, "Name": p.get("Bucket")},
            ("s3", "CreateBucket"): lambda p: {"Location": f"/{p.get('Bucket', '')}"},
            ("s3", "PutObject"): lambda p: {"ETag": '"offline"'},
            ("s3", "GetBucketLocation"): lambda p: {"LocationConstraint": self.region},
            ("sagemaker", "CreateTrainingJob"): lambda p: {
                "TrainingJobArn": f"{arn}:training-job/{p['TrainingJobName']}"
            },
            ("sagemaker", "DescribeTrainingJob"): lambda p: self._describe_training_job(p["TrainingJobName"]),
            ("sagemaker", "CreateHyperParameterTuningJob"): lambda p: {
                "HyperParameterTuningJobArn": f"{arn}:hyper-parameter-tuning-job/"
                f"{p['HyperParameterTuningJobName']}"
            },
            ("sagemaker", "DescribeHyperParameterTuningJob"): lambda p: self._describe_tuning_job(
                p["HyperParameterTuningJobName"]
            ),
        }

    def _describe_training_job(self, name: str) -> dict[str, Any]:
        created = next(
            (
                c.params
                for c in reversed(self.calls)
                if c.params.get("TrainingJobName") == name and c.operation == "CreateTrainingJob"
            ),
            {},
        )
        return {
            "TrainingJobName": name,
            "TrainingJobArn": f"arn:aws:sagemaker:{self.region}:{FAKE_ACCOUNT}:training-job/{name}",
            "TrainingJobStatus": "InProgress",
            "SecondaryStatus": "Starting",
            "AlgorithmSpecification": created.get("AlgorithmSpecification", {"TrainingInputMode": "File"}),
            "ResourceConfig": created.get("ResourceConfig", {"VolumeSizeInGB": 30}),
            "StoppingCondition": created.get("StoppingCondition", {}),
            "CreationTime": _now(),
            "ModelArtifacts": {"S3ModelArtifacts": ""},
        }

    def _describe_tuning_job(self, name: str) -> dict[str, Any]:
        created = next(
            (
                c.params
                for c in reversed(self.calls)
                if c.operation == "CreateHyperParameterTuningJob"
                and c.params.get("HyperParameterTuningJobName") == name
            ),
            {},
        )
        return {
            "HyperParameterTuningJobName": name,
            "HyperParameterTuningJobArn": f"arn:aws:sagemaker:{self.region}:{FAKE_ACCOUNT}:"
            f"hyper-parameter-tuning-job/{name}",
            "HyperParameterTuningJobConfig": created.get("HyperParameterTuningJobConfig", {}),
            "HyperParameterTuningJobStatus": "InProgress",
            "CreationTime": _now(),
            "TrainingJobStatusCounters": {},
            "ObjectiveStatusCounters": {},
        }


def _snapshot(value: Any) -> Any:
    """A plain copy of request parameters; streams and other live objects become a short label."""
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_snapshot(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool | dt.datetime):
        return value
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return f"<{type(value).__name__}>"


def _stash_api_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """Keep the API-level parameters in the per-call context for the ``before-call`` handler."""
    context["recorder_api_params"] = _snapshot(params)


def recording_session(
    region: str,
    *,
    offline: bool = True,
    passthrough: Iterable[str] = (),
    credentials: tuple[str, str] | None = ("offline", "offline"),
) -> tuple[boto3.Session, RequestRecorder]:
    """A boto3 session whose every API call is recorded (and answered locally when ``offline``)."""
    if credentials is None:
        session = boto3.Session(region_name=region)
    else:
        session = boto3.Session(
            region_name=region, aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1]
        )
    # before-parameter-build sees the API-level parameters; botocore validates them right after, and
    # before-call (which only gets the HTTP body) runs once they passed: so a recorded call is valid.
    session.events.register("before-parameter-build", _stash_api_params)
    recorder = RequestRecorder(offline=offline, passthrough=frozenset(passthrough)).install(session)
    return session, recorder
