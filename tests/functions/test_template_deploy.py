"""template.yaml's deployment side: alarms reach a person, IAM grants what the code calls, environments
do not collide, samconfig.toml carries every parameter, and the optional real-time endpoint serves
the transform's Model."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import boto3
import pytest
from bincount.settings import Settings

from local.emulator.template import load_template

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
TOPIC = {"Ref": "AlarmTopic"}
# Physical-name properties: a fixed value would make a second stack in the account collide.
NAME_PROPERTIES = {
    "BucketName",
    "TableName",
    "QueueName",
    "Name",
    "TopicName",
    "FunctionName",
    "RoleName",
    "ManagedPolicyName",
    "EndpointName",
    "EndpointConfigName",
    "ModelName",
    "LogGroupName",
    "AlarmName",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(REPO / "template.yaml")


def resources_of(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def statements(node: Any) -> list[dict[str, Any]]:
    """Every IAM-style statement below ``node``."""
    if isinstance(node, dict):
        found = [node] if "Effect" in node and "Action" in node else []
        return found + [s for value in node.values() for s in statements(value)]
    if isinstance(node, list):
        return [s for value in node for s in statements(value)]
    return []


def actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return set(action) if isinstance(action, list) else {action}


def references(node: Any) -> set[str]:
    """Logical ids named by Ref / GetAtt / ${...} anywhere in ``node``."""
    if isinstance(node, dict):
        found: set[str] = set()
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                found.add(value)
            elif key == "Fn::GetAtt":
                found.add(value[0])
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)}
            found |= references(value)
        return found
    if isinstance(node, list):
        return {name for value in node for name in references(value)}
    return set()


# ---------------------------------------------------------------- alarms


def test_every_alarm_notifies_the_topic_when_it_fires_and_clears(template: dict[str, Any]) -> None:
    alarms = resources_of(template, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 8
    for name, alarm in alarms.items():
        properties = alarm["Properties"]
        assert TOPIC in properties.get("AlarmActions", []), name
        assert TOPIC in properties.get("OKActions", []), name
    assert template["Resources"]["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    subscription = template["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["TopicArn"] == TOPIC


def watched(template: dict[str, Any]) -> set[tuple[str, str]]:
    """(metric, the resource or service it watches) for every alarm."""
    found = set()
    for alarm in resources_of(template, "AWS::CloudWatch::Alarm").values():
        properties = alarm["Properties"]
        metrics = [properties] if "MetricName" in properties else []
        metrics += [
            query["MetricStat"]["Metric"] for query in properties.get("Metrics", []) if "MetricStat" in query
        ]  # metric math: each metric it reads
        for metric in metrics:
            subjects = references(metric.get("Dimensions", [])) or {
                d["Value"] for d in metric.get("Dimensions", [])
            }
            found |= {(metric["MetricName"], subject) for subject in subjects}
    return found


def dead_letter_queues(template: dict[str, Any]) -> set[str]:
    """Queues that receive what failed: SQS redrive targets, rule DLQs, Lambda failure destinations."""
    found = set()
    for resource in template["Resources"].values():
        properties = resource.get("Properties") or {}
        redrive = properties.get("RedrivePolicy") or {}
        found |= references(redrive.get("deadLetterTargetArn"))
        for event in (properties.get("Events") or {}).values():
            found |= references((event.get("Properties") or {}).get("DeadLetterConfig"))
            on_failure = ((event.get("Properties") or {}).get("DestinationConfig") or {}).get("OnFailure")
            found |= references((on_failure or {}).get("Destination"))  # a stream mapping's
        destination = ((properties.get("EventInvokeConfig") or {}).get("DestinationConfig") or {}).get(
            "OnFailure"
        )
        found |= references((destination or {}).get("Destination"))
    return found


def test_the_alarms_an_operator_needs_exist(template: dict[str, Any]) -> None:
    alarms = watched(template)
    assert ("ApproximateAgeOfOldestMessage", "IngestQueue") in alarms
    dlqs = dead_letter_queues(template)
    assert {"IngestDLQ", "CollectorDLQ", "CorrectionsDLQ"} <= dlqs
    for queue in dlqs:
        assert ("ApproximateNumberOfMessagesVisible", queue) in alarms, queue
    for metric in ("JobsOverdue", "JobsRefused", "JobsFailed"):
        assert (metric, "bincount") in alarms, metric
    for function in resources_of(template, "AWS::Serverless::Function"):
        assert ("Errors", function) in alarms, function
    assert ("Throttles", "BatcherFunction") in alarms
    for table in ("CountsTable", "JobsTable"):
        assert {("ReadThrottleEvents", table), ("WriteThrottleEvents", table)} <= alarms, table
    assert {("ImagesRejected", "bincount"), ("ImagesCounted", "bincount")} <= alarms


def test_rejected_photo_rate_is_the_collectors_metrics(template: dict[str, Any]) -> None:
    """The alarm divides the two metrics the collector emits (collector.app.emit_metrics)."""
    import inspect

    from collector import app

    source = inspect.getsource(app.emit_metrics)
    assert 'name="ImagesRejected"' in source and 'name="ImagesCounted"' in source
    alarm = template["Resources"]["RejectedPhotoRateAlarm"]["Properties"]
    assert alarm["Threshold"] == {"Ref": "RejectedPhotoAlarmRate"}
    (rate,) = [query for query in alarm["Metrics"] if "Expression" in query]
    assert rate["Expression"] == "IF(rejected + counted >= 20, rejected / (rejected + counted), 0)"


def test_tables_holding_labels_and_jobs_survive_a_stack_deletion(template: dict[str, Any]) -> None:
    for name in ("CountsTable", "JobsTable"):
        table = template["Resources"][name]
        assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain", name
        assert table["Properties"]["DeletionProtectionEnabled"] is True, name


def test_each_role_writes_only_the_results_prefixes_it_uses(template: dict[str, Any]) -> None:
    results = "arn:${AWS::Partition}:s3:::bincount-results-${Environment}-${AWS::AccountId}-${AWS::Region}"
    expected = {
        # the batcher's manifests and staged copies; the collector and reconciler re-drive chunks
        "BatcherFunction": {
            f"{results}/{Settings.manifest_prefix}*",
            f"{results}/{Settings.staging_prefix}*",
        },
        "CollectorFunction": {f"{results}/{Settings.manifest_prefix}*"},
        "ReconcilerFunction": {f"{results}/{Settings.manifest_prefix}*"},
        "CorrectedFunction": set(),
    }
    for function, prefixes in expected.items():
        written = set()
        for statement in function_statements(template, function):
            if "s3:PutObject" in actions(statement):
                listed = (
                    statement["Resource"]
                    if isinstance(statement["Resource"], list)
                    else [statement["Resource"]]
                )
                written |= {resource["Fn::Sub"] for resource in listed}
        assert written == prefixes, function
    role = template["Resources"]["SageMakerExecutionRole"]
    (write,) = [s for s in statements(role) if "s3:PutObject" in actions(s)]
    assert write["Resource"] == {"Fn::Sub": f"{results}/{Settings.output_prefix}*"}


def test_the_reconciler_never_overlaps_itself(template: dict[str, Any]) -> None:
    assert template["Resources"]["ReconcilerFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1


def test_only_the_collectors_rule_may_dead_letter_into_its_queue(template: dict[str, Any]) -> None:
    (statement,) = template["Resources"]["CollectorDLQPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Condition"]["ArnEquals"] == {
        "aws:SourceArn": {"Fn::GetAtt": ["CollectorFunctionTransformJobState", "Arn"]}
    }  # SAM's name for the rule of CollectorFunction's TransformJobState event
    assert "TransformJobState" in template["Resources"]["CollectorFunction"]["Properties"]["Events"]


def test_a_custom_image_is_pulled_from_its_own_repository_only(template: dict[str, Any]) -> None:
    role = template["Resources"]["SageMakerExecutionRole"]
    (pull,) = [s for s in statements(role) if s.get("Sid") == "PullInferenceImage"]
    _condition, _default, custom = pull["Resource"]["Fn::If"]
    template_text, names = custom["Fn::Sub"]
    assert (
        template_text == "arn:${AWS::Partition}:ecr:${ImageRegion}:${ImageAccount}:repository/${Repository}"
    )
    assert "*" not in json.dumps(custom)
    uri = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/counting:v3"
    assert evaluate(names["ImageAccount"], uri) == "123456789012"
    assert evaluate(names["ImageRegion"], uri) == "eu-west-1"
    assert evaluate(names["Repository"], uri) == "team/counting"
    assert evaluate(names["Repository"], uri.replace(":v3", "@sha256:abc")) == "team/counting"


def evaluate(node: Any, uri: str) -> Any:
    """!Select / !Split / !Ref InferenceImageUri, as CloudFormation evaluates them."""
    if isinstance(node, dict):
        ((function, argument),) = node.items()
        if function == "Ref":
            assert argument == "InferenceImageUri"
            return uri
        if function == "Fn::Split":
            return evaluate(argument[1], uri).split(argument[0])
        if function == "Fn::Select":
            return evaluate(argument[1], uri)[int(argument[0])]
    return node


def test_access_logging_is_a_parameter(template: dict[str, Any]) -> None:
    assert template["Parameters"]["AccessLogBucket"]["Default"] == ""
    for bucket, prefix in (("IngestBucket", "ingest/"), ("ResultsBucket", "results/")):
        logging = template["Resources"][bucket]["Properties"]["LoggingConfiguration"]["Fn::If"]
        assert logging[0] == "HasAccessLogs" and logging[2] == {"Ref": "AWS::NoValue"}
        assert logging[1] == {"DestinationBucketName": {"Ref": "AccessLogBucket"}, "LogFilePrefix": prefix}


# ---------------------------------------------------------------- names and environments


def test_named_resources_carry_the_environment(template: dict[str, Any]) -> None:
    """dev and prod (and any second stack of another Environment) never claim the same name."""
    for logical_id, resource in template["Resources"].items():
        for key in NAME_PROPERTIES & set(resource.get("Properties") or {}):
            name = resource["Properties"][key]
            assert isinstance(name, dict), f"{logical_id}.{key} is a fixed name: {name}"
            named_after = references(name)
            assert "Environment" in named_after or named_after & set(template["Resources"]), (
                f"{logical_id}.{key} does not depend on Environment: {name}"
            )


ENVIRONMENTS = ("dev", "prod")


def samconfig() -> dict[str, Any]:
    return tomllib.loads((REPO / "samconfig.toml").read_text())


def samconfig_parameters() -> dict[str, dict[str, str]]:
    """Each environment's parameter_overrides as sam reads them (``Key=""`` is an empty value)."""
    found = {}
    for environment in ENVIRONMENTS:
        overrides = samconfig()[environment]["deploy"]["parameters"]["parameter_overrides"]
        pairs = [item.split("=", 1) for item in overrides]
        found[environment] = {key: value.strip('"') for key, value in pairs}
    return found


def satisfies(spec: dict[str, Any], value: str) -> bool:
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        return False
    if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
        return False
    if spec.get("Type") == "Number":
        number = float(value)
        return float(spec.get("MinValue", number)) <= number <= float(spec.get("MaxValue", number))
    return True


def rule_holds(node: Any, values: dict[str, str]) -> Any:
    """Evaluates the rule functions template.yaml's Rules use, as CloudFormation does at deploy time."""
    if not isinstance(node, dict):
        return node
    ((function, argument),) = node.items()
    if function == "Ref":
        return values[argument]
    args = [rule_holds(item, values) for item in argument]
    if function == "Fn::Equals":
        return args[0] == args[1]
    if function == "Fn::Contains":
        return args[1] in args[0]
    if function == "Fn::Not":
        return not args[0]
    if function == "Fn::And":
        return all(args)
    if function == "Fn::Or":
        return any(args)
    return argument  # a literal list


def test_samconfig_environments_carry_every_parameter_a_deploy_needs(template: dict[str, Any]) -> None:
    declared = template["Parameters"]
    required = {name for name, spec in declared.items() if "Default" not in spec}
    assert "ModelArtifactKey" in required
    environments = samconfig_parameters()
    for environment, given in environments.items():
        assert set(given) <= set(declared), environment
        assert required <= set(given), environment
        for name, value in given.items():
            assert satisfies(declared[name], value), f"[{environment}] {name}={value}"
        values = {name: str(spec.get("Default", "")) for name, spec in declared.items()} | given
        for name, rule in template["Rules"].items():
            if rule_holds(rule["RuleCondition"], values):
                assert all(rule_holds(a["Assert"], values) for a in rule["Assertions"]), (
                    f"[{environment}] {name}"
                )
    assert [environments[e]["Environment"] for e in ENVIRONMENTS] == ["dev", "prod"]
    stacks = {samconfig()[e]["global"]["parameters"]["stack_name"] for e in ENVIRONMENTS}
    assert len(stacks) == 2
    assert "deploy" not in samconfig()["default"]  # a bare `sam deploy` never picks an environment


def test_dev_deploys_the_shipped_model() -> None:
    """The artifact key names the model version: change it with model/weights (then upload, deploy)."""
    version = json.loads((REPO / "model/weights/config.json").read_text())["version"]
    assert samconfig_parameters()["dev"]["ModelArtifactKey"] == f"models/{version}/model.tar.gz"


def test_rules_refuse_a_gpu_image_on_serverless(template: dict[str, Any]) -> None:
    defaults = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    rule = template["Rules"]["ServerlessNeedsCpuImage"]
    serverless = defaults | {"RealtimeEndpoint": "serverless"}
    assert rule_holds(rule["RuleCondition"], serverless)
    assert not rule_holds(rule["Assertions"][0]["Assert"], serverless)  # default ml.g4dn.xlarge
    assert rule_holds(rule["Assertions"][0]["Assert"], serverless | {"InstanceType": "ml.m5.large"})
    matching = template["Rules"]["RealtimeInstanceMatchesImage"]["Assertions"][0]["Assert"]
    instance = defaults | {"RealtimeEndpoint": "instance"}
    assert rule_holds(matching, instance | {"RealtimeInstanceType": "ml.g5.xlarge"})
    assert not rule_holds(matching, instance | {"RealtimeInstanceType": "ml.c5.xlarge"})


def code_blocks(markdown: str) -> str:
    return "\n".join(markdown.split("```")[1::2])


def test_readme_deploys_without_replacing_samconfigs_parameters() -> None:
    """``--parameter-overrides`` on the command line replaces samconfig's whole list."""
    readme = (REPO / "README.md").read_text()
    commands = code_blocks(readme.split("## Deploying", 1)[1].split("\n## ", 1)[0])
    assert "sam deploy --config-env dev" in commands
    assert "sam deploy --config-env prod" in commands
    assert "--parameter-overrides" not in commands
    assert "--guided" not in commands
    assert "--parameter-overrides" not in code_blocks((REPO / "docs/pipeline.md").read_text())


# ---------------------------------------------------------------- IAM


def function_statements(template: dict[str, Any], function: str) -> list[dict[str, Any]]:
    policies = template["Resources"][function]["Properties"]["Policies"]
    assert all(set(policy) == {"Statement"} for policy in policies), (
        "SAM policy templates grant more than needed"
    )
    return statements(policies)


def test_functions_get_exactly_the_calls_their_code_makes(template: dict[str, Any]) -> None:
    batcher = {a for s in function_statements(template, "BatcherFunction") for a in actions(s)}
    assert batcher == {
        "s3:PutObject",
        "s3:GetObject",  # HEAD of a staged copy, the notified version (with s3:GetObjectVersion)
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "dynamodb:BatchGetItem",  # Collector.record_rejections reads the records it may write
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
        "sqs:SendMessage",  # refused notifications to the ingest DLQ
        "events:PutEvents",  # Bin Image Rejected for the uploads it rejects
        "sagemaker:CreateTransformJob",
        "sagemaker:AddTags",
        "sagemaker:ListTransformJobs",
        "iam:PassRole",
    }
    batcher_statements = function_statements(template, "BatcherFunction")
    (refuse,) = [s for s in batcher_statements if "sqs:SendMessage" in actions(s)]
    assert refuse["Resource"] == {"Fn::GetAtt": ["IngestDLQ", "Arn"]}
    (publish,) = [s for s in batcher_statements if "events:PutEvents" in actions(s)]
    assert publish["Condition"] == {
        "StringEquals": {"events:source": "bincount", "events:detail-type": "Bin Image Rejected"}
    }
    collector = function_statements(template, "CollectorFunction")
    for statement in collector:
        assert not actions(statement) & {"s3:PutObjectAcl", "s3:DeleteObject", "dynamodb:Scan"}, statement
        if "dynamodb:DeleteItem" in actions(statement):  # Powertools idempotency only
            assert statement["Resource"] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    (publish,) = [s for s in collector if "events:PutEvents" in actions(s)]
    assert publish["Condition"] == {"StringEquals": {"events:source": "bincount"}}


def test_only_the_pipelines_functions_publish_bincount_events(template: dict[str, Any]) -> None:
    policy = template["Resources"]["InventoryBusPolicy"]["Properties"]
    assert policy["EventBusName"] == {"Fn::GetAtt": ["InventoryBus", "Name"]}  # !Ref of a bus breaks moto
    statement = policy["Statement"]
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*"
    assert statement["Action"] == "events:PutEvents"
    condition = statement["Condition"]
    assert set(condition) == {"StringEquals", "ArnNotEquals"}  # no detail type is left to people
    assert condition["StringEquals"] == {"events:source": "bincount"}
    # The reconciler collects missed jobs with the collector's code, so it publishes the same events;
    # the batcher publishes Bin Image Rejected for the uploads it rejects before any job; the
    # corrections function publishes Bin Count Corrected from the stored labels.
    assert condition["ArnNotEquals"]["aws:PrincipalArn"] == [
        {"Fn::GetAtt": ["CollectorFunctionRole", "Arn"]},
        {"Fn::GetAtt": ["ReconcilerFunctionRole", "Arn"]},
        {"Fn::GetAtt": ["BatcherFunctionRole", "Arn"]},
        {"Fn::GetAtt": ["CorrectedFunctionRole", "Arn"]},
    ]
    for function in ("CollectorFunction", "ReconcilerFunction"):
        (publish,) = [s for s in function_statements(template, function) if "events:PutEvents" in actions(s)]
        assert publish["Condition"] == {"StringEquals": {"events:source": "bincount"}}
    (publish,) = [
        s for s in function_statements(template, "CorrectedFunction") if "events:PutEvents" in actions(s)
    ]
    assert publish["Condition"] == {
        "StringEquals": {"events:source": "bincount", "events:detail-type": "Bin Count Corrected"}
    }


class CapturingTable:
    """A table that records the UpdateItem it is asked for (and answers success)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        return {}


def test_reviewer_policy_grants_exactly_a_reviewers_work(template: dict[str, Any]) -> None:
    document = template["Resources"]["ReviewerPolicy"]["Properties"]["PolicyDocument"]
    granted = {s["Sid"]: actions(s) for s in document["Statement"]}
    assert granted == {
        "FindTheStack": {"cloudformation:DescribeStacks"},
        "ReadCounts": {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:Scan"},
        "SaveLabels": {"dynamodb:UpdateItem"},
        "SeePhotos": {"s3:GetObject", "s3:GetObjectVersion"},
        "TellDeletedPhotos": {"s3:ListBucket"},
    }  # no events:PutEvents: the corrections function publishes from the stored label
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    table = {"Fn::GetAtt": ["CountsTable", "Arn"]}
    assert by_sid["ReadCounts"]["Resource"] == by_sid["SaveLabels"]["Resource"] == table
    ingest = "arn:${AWS::Partition}:s3:::bincount-ingest-${Environment}-${AWS::AccountId}-${AWS::Region}"
    assert by_sid["SeePhotos"]["Resource"] == {"Fn::Sub": f"{ingest}/*"}  # objects, of the ingest bucket only
    assert by_sid["TellDeletedPhotos"]["Resource"] == {"Fn::Sub": ingest}
    assert by_sid["FindTheStack"]["Resource"] == {"Ref": "AWS::StackId"}


def test_reviewers_update_only_the_label_fields_the_console_writes(template: dict[str, Any]) -> None:
    """``dynamodb:Attributes`` lists exactly the names the label write sends (key, label fields,
    the version condition's), and ``ReturnValues`` cannot widen what comes back."""
    from bincount.adapters.labels import DynamoLabelStore
    from bincount.corrections import (
        LABEL_CONDITION_FIELDS,
        LABEL_FIELDS,
        HumanLabel,
        RecordVersion,
        label_attributes,
    )

    document = template["Resources"]["ReviewerPolicy"]["Properties"]["PolicyDocument"]
    (save,) = [s for s in document["Statement"] if s["Sid"] == "SaveLabels"]
    allowed = save["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    assert save["Condition"]["StringEqualsIfExists"] == {
        "dynamodb:ReturnValues": ["NONE", "UPDATED_OLD", "UPDATED_NEW"]
    }
    assert set(allowed) == {"pk", "sk", *LABEL_FIELDS, *LABEL_CONDITION_FIELDS}
    assert not {"count", "count_is_lower_bound", "needs_review", "latest_version", "human_label"} & set(
        allowed
    )

    sent = set()
    for reviewed in ("", "2026-12-01T00:00:00.000Z"):  # a first label, and replacing one
        table = CapturingTable()
        record = {"count": 3, "model_version": "m"}
        attributes = label_attributes(record, HumanLabel(4), "alice", "2026-12-02T00:00:00.000Z")
        DynamoLabelStore(table).put_label("BIN-1", "IMAGE#k#v", attributes, RecordVersion("e", "r", reviewed))
        (request,) = table.requests
        assert "ReturnValues" not in request
        sent |= set(request["Key"]) | set(request["ExpressionAttributeNames"].values())
    assert sent == set(allowed)


def test_labels_reach_the_bus_through_the_counts_table_stream(template: dict[str, Any]) -> None:
    resources = template["Resources"]
    table = resources["CountsTable"]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    function = resources["CorrectedFunction"]["Properties"]
    assert function["Handler"] == "corrected.app.handler"
    ((_name, event),) = function["Events"].items()
    mapping = event["Properties"]
    assert event["Type"] == "DynamoDB" and mapping["Stream"] == {"Fn::GetAtt": ["CountsTable", "StreamArn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # Powertools' partial failures
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["CorrectionsDLQ", "Arn"]
    }
    assert mapping["MaximumRetryAttempts"] >= 1 and mapping["StartingPosition"] == "TRIM_HORIZON"
    pattern = json.loads(mapping["FilterCriteria"]["Filters"][0]["Pattern"])
    assert pattern["dynamodb"]["Keys"]["sk"]["S"] == [{"prefix": "IMAGE#"}]
    granted = {a for s in function_statements(template, "CorrectedFunction") for a in actions(s)}
    assert granted == {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
        "dynamodb:GetItem",  # LATEST
        "dynamodb:UpdateItem",  # LATEST follows the label
        "events:PutEvents",
        "sqs:SendMessage",  # the on-failure destination
    }
    assert resources["CorrectionsDLQNotEmptyAlarm"]["Properties"]["AlarmActions"]


def test_sagemaker_reads_only_the_artifact_from_this_account(template: dict[str, Any]) -> None:
    role = template["Resources"]["SageMakerExecutionRole"]
    (read,) = [s for s in statements(role) if s.get("Sid") == "ReadModelArtifact"]
    assert read["Resource"]["Fn::Sub"].endswith("/${ModelArtifactKey}")
    assert read["Condition"] == {"StringEquals": {"s3:ResourceAccount": {"Ref": "AWS::AccountId"}}}
    assert "Default" not in template["Parameters"]["ModelArtifactKey"]


def test_transform_jobs_read_staged_copies_not_the_ingest_bucket(template: dict[str, Any]) -> None:
    """Jobs read the batcher's copy of the notified version (bincount.staging), so the SageMaker
    role needs nothing of the ingest bucket; of the results bucket, each prefix for its use."""
    role = template["Resources"]["SageMakerExecutionRole"]
    assert "bincount-ingest-" not in json.dumps(role)
    by_sid = {s["Sid"]: s for s in statements(role) if "Sid" in s}
    results = "arn:${AWS::Partition}:s3:::bincount-results-${Environment}-${AWS::AccountId}-${AWS::Region}"
    granted = {
        sid: (actions(by_sid[sid]), by_sid[sid]["Resource"]["Fn::Sub"])
        for sid in ("ReadStagedPhotos", "ReadManifests", "WriteResults", "ListResults")
    }
    assert granted == {
        # The functions' default layout (no function's environment overrides it).
        "ReadStagedPhotos": ({"s3:GetObject"}, f"{results}/{Settings.staging_prefix}*"),
        "ReadManifests": ({"s3:GetObject"}, f"{results}/{Settings.manifest_prefix}*"),
        "WriteResults": ({"s3:PutObject", "s3:AbortMultipartUpload"}, f"{results}/{Settings.output_prefix}*"),
        "ListResults": ({"s3:ListBucket"}, results),
    }
    s3_statements = [s for s in statements(role) if any(a.startswith("s3:") for a in actions(s))]
    assert {s.get("Sid") for s in s3_statements} == {"ReadModelArtifact", *granted}
    environment = json.dumps(template["Globals"]["Function"]["Environment"])
    assert not any(name in environment for name in ("STAGING_PREFIX", "MANIFEST_PREFIX", "OUTPUT_PREFIX"))


# ---------------------------------------------------------------- the stack in moto


def create(parameters: dict[str, str]) -> dict[str, str]:
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName="bincount-deploy",
        TemplateBody=(REPO / "template.yaml").read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    stack = cloudformation.describe_stacks(StackName="bincount-deploy")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


def test_outputs_the_operator_tools_read(stack: Any) -> None:
    outputs = stack.outputs
    assert outputs["AlarmTopicArn"].startswith("arn:aws:sns:")
    assert outputs["ReviewerPolicyArn"].startswith("arn:aws:iam::")
    assert (
        outputs["ModelDataUrl"] == "s3://bincount-artifacts-123456789012-us-east-1/models/test/model.tar.gz"
    )
    assert "RealtimeEndpointName" not in outputs  # RealtimeEndpoint=none


@pytest.mark.parametrize(
    ("parameters", "variant"),
    [
        (
            {
                "RealtimeEndpoint": "serverless",
                "InstanceType": "ml.c5.xlarge",
                "RealtimeServerlessMemoryMB": "4096",
            },
            {"ServerlessConfig": {"MemorySizeInMB": 4096, "MaxConcurrency": 2}},
        ),
        (
            {
                "RealtimeEndpoint": "instance",
                "RealtimeInstanceType": "ml.g4dn.2xlarge",
                "RealtimeInstanceCount": "2",
            },
            {"InstanceType": "ml.g4dn.2xlarge", "InitialInstanceCount": 2},
        ),
    ],
)
def test_realtime_endpoint_serves_the_transform_model(
    aws: None, parameters: dict[str, str], variant: dict[str, Any]
) -> None:
    outputs = create({"ModelArtifactKey": "models/x/model.tar.gz", **parameters})
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    endpoint = sagemaker.describe_endpoint(EndpointName=outputs["RealtimeEndpointName"])
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    production: dict[str, Any] = dict(config["ProductionVariants"][0])
    assert len(config["ProductionVariants"]) == 1
    assert production["ModelName"] == outputs["ModelName"]
    assert {key: production[key] for key in variant} == variant
    image = sagemaker.describe_model(ModelName=outputs["ModelName"])["PrimaryContainer"]["Image"]
    kind = "gpu" if parameters.get("InstanceType", "ml.g4dn.xlarge").startswith(("ml.g", "ml.p")) else "cpu"
    assert image.endswith(f"/pytorch-inference:2.6-{kind}-py312")
