"""The whole pipeline wired on one machine: emulator, stack, Lambda service, Batch Transform.

:class:`LocalPipeline` is what the demo, the benchmark and the end-to-end test share. It starts
moto, creates the stack from ``template.yaml``, points this process's boto3 (and so the
handlers') at the emulator, starts the model server from the artifact (restarted when it dies),
and runs its workers: the batcher's SQS event source mapping, the executor, the collector's rule
subscription and the reconciler's schedule.
A downstream consumer queue is subscribed to the inventory bus to show what consumers receive.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local.emulator.lambda_runtime import (
    DynamoStreamEventSourceMapping,
    EventRuleSubscription,
    FunctionRuntime,
    ScheduledInvocation,
    SqsEventSourceMapping,
    process_environment,
    reset_handler_caches,
    schedule_seconds,
    subscribe_queue,
)
from local.emulator.model_swap import SwitchingInvoker
from local.emulator.moto_server import AwsEndpoint, moto_server, patched_environ
from local.emulator.serving_server import Restart, Supervisor, extract_model, serving_process
from local.emulator.stack import FunctionSpec, LocalStack
from local.emulator.torchserve_server import torchserve_process
from local.emulator.transform_executor import TransformExecutor, busy_seconds
from model.instances import local_plan

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"


@dataclass
class PipelineOptions:
    """Knobs of a local run; template parameters are passed through to ``create_stack``."""

    model_artifact: Path
    template: Path = TEMPLATE
    stack_name: str = "bincount-local"
    parameters: dict[str, str] = field(default_factory=dict)
    batching_window_s: float | None = 2.0  # the event source mapping's window, shrunk for a demo
    retry_visibility_s: int | None = None  # None: failed items wait out the queue's visibility timeout
    log_dir: Path | None = None
    # applied over the functions' environment, e.g. quieter Powertools logs for a terminal demo
    environment_overrides: dict[str, str] = field(default_factory=dict)
    torch_threads: int | None = None
    # "python": the small server with the container's HTTP contract; "torchserve": the real
    # SageMaker PyTorch serving stack (TorchServe + toolkit), see local/emulator/torchserve_server.py
    server: str = "python"
    # called once the functions' environment is in place, before any event (the pipeline benchmark
    # starts its CPU meter here)
    prepare: Callable[[], None] | None = None
    # a function's Schedule event (the reconciler's rate(15 minutes)) fires this often here, shrunk
    # like the batching window so waiting photos get their jobs within a demo; None: the template's
    schedule_every_s: float | None = 10.0


# moto reports every transform job Completed the moment it is created, while the executor runs it
# later and sends its real state changes itself: the reconciler locally would collect jobs that
# have not run. So locally it leaves jobs to their events for a day and only restarts waiting photos.
LOCAL_RECONCILE_SETTLE_S = "86400"


@dataclass
class ModelServers:
    """The supervised model servers up, by URL, and every restart they made (``bincount status``)."""

    supervisors: dict[str, Supervisor] = field(default_factory=dict)
    restarts: list[Restart] = field(default_factory=list)
    listeners: list[Callable[[Restart], None]] = field(default_factory=list)

    def started(self, supervisor: Supervisor) -> None:
        self.supervisors[supervisor.url] = supervisor

    def restarted(self, restart: Restart) -> None:
        self.restarts.append(restart)
        for listener in list(self.listeners):
            listener(restart)


@dataclass
class StageClock:
    """First and last activity of one stage, for images/s per stage."""

    first: float | None = None
    last: float | None = None
    items: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def tick(self, items: int = 1) -> None:
        now = time.monotonic()
        with self._lock:
            self.first = now if self.first is None else self.first
            self.last = now
            self.items += items

    @property
    def seconds(self) -> float:
        return 0.0 if self.first is None or self.last is None else self.last - self.first


@dataclass
class Wiring:
    """Names the run needs, all derived from the created stack."""

    ingest_bucket: str
    ingest_prefix: str
    ingest_queue_url: str
    dlq_urls: list[str]
    counts_table: str
    bus_names: list[str]


def derive_wiring(stack: LocalStack) -> Wiring:
    """Find the ingest bucket (the one whose notification feeds a function's queue) and friends."""
    functions = stack.functions()
    sqs_sources = {source.queue_arn: source for spec in functions.values() for source in spec.sqs_sources}
    for logical_id, resource in stack.template["Resources"].items():
        if resource.get("Type") != "AWS::S3::Bucket":
            continue
        declared = (resource.get("Properties") or {}).get("NotificationConfiguration") or {}
        for entry in stack.resolver.resolve(declared).get("QueueConfigurations", []):
            if entry["Queue"] in sqs_sources:
                rules = ((entry.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
                prefix = next((r["Value"] for r in rules if r["Name"].lower() == "prefix"), "")
                queue_url = sqs_sources[entry["Queue"]].queue_url
                return Wiring(
                    ingest_bucket=stack.ref(logical_id),
                    ingest_prefix=prefix,
                    ingest_queue_url=queue_url,
                    dlq_urls=_dead_letter_queues(stack, queue_url),
                    counts_table=_env_of_any(functions, "COUNTS_TABLE"),
                    bus_names=stack.bus_names(),
                )
    raise LookupError("template.yaml has no bucket whose notification feeds a function's SQS queue")


def _env_of_any(functions: Mapping[str, Any], name: str) -> str:
    for spec in functions.values():
        if name in spec.environment:
            return str(spec.environment[name])
    raise LookupError(f"no function of the template sets {name}")


def _dead_letter_queues(stack: LocalStack, queue_url: str) -> list[str]:
    sqs = stack.endpoint.client("sqs")
    policy = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    if "RedrivePolicy" not in policy:
        return []
    arn = json.loads(policy["RedrivePolicy"])["deadLetterTargetArn"]
    return [sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"]]


class LocalPipeline:
    """Runs the pipeline's moving parts in background threads until :meth:`stop`."""

    def __init__(
        self, endpoint: AwsEndpoint, stack: LocalStack, serving_url: str, options: PipelineOptions
    ) -> None:
        self.endpoint = endpoint
        self.stack = stack
        self.options = options
        self.serving_url = serving_url  # the model server's /invocations (the local real-time endpoint)
        # every model server up, by URL: a promotion starts one and closes the previous one's
        self.servers: dict[str, contextlib.ExitStack] = {}
        self.invoker = SwitchingInvoker(serving_url)
        self.wiring = derive_wiring(stack)
        functions = stack.functions()
        environment = {
            **process_environment(functions, endpoint),
            "RECONCILE_SETTLE_S": LOCAL_RECONCILE_SETTLE_S,
            **options.environment_overrides,
        }
        # The handlers read settings once per process (as in Lambda); this process may host several
        # pipelines in a row (tests), so the environment is restored at stop and caches dropped both ways.
        self._environment = contextlib.ExitStack()
        self._environment.enter_context(patched_environ(environment))
        reset_handler_caches()
        if options.prepare is not None:
            options.prepare()
        self._records: dict[tuple[str, str], dict[str, Any]] = {}  # image records seen, by (pk, sk)
        self._records_generation = -1  # collector invocations finished when they were listed
        self.clocks = {name: StageClock() for name in ("upload", "batcher", "transform", "collector")}
        self.runtimes: dict[str, FunctionRuntime] = {}
        self.mappings: list[SqsEventSourceMapping] = []
        self.subscriptions: list[EventRuleSubscription] = []
        self.streams: list[DynamoStreamEventSourceMapping] = []
        self.schedules: list[ScheduledInvocation] = []
        self.model_servers = ModelServers()
        for spec in functions.values():
            self._attach_function(spec)
        self.executor = TransformExecutor(
            endpoint,
            self.invoker,
            on_record=self.clocks["transform"].tick,
            # side by side, up to the template's MaxJobsInFlight, as on SageMaker
            parallel_jobs=int(_env_of_any(functions, "MAX_JOBS_IN_FLIGHT")),
            # the one local model server is sized for this machine, as TorchServe is on an instance
            max_in_flight=local_plan().max_concurrent_transforms,
        )
        self.consumer_queues = self._subscribe_consumers()
        self.consumed_events: list[dict[str, Any]] = []
        self.worker_errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _attach_function(self, spec: FunctionSpec) -> None:
        """A runtime for one function of the stack, fed by its SQS mappings and EventBridge rules."""
        runtime = FunctionRuntime(spec, self.endpoint.region)
        self.runtimes[spec.logical_id] = runtime
        for source in spec.sqs_sources:
            self.mappings.append(
                SqsEventSourceMapping(
                    self.endpoint,
                    runtime,
                    source,
                    batching_window_s=self.options.batching_window_s,
                    retry_visibility_s=self.options.retry_visibility_s,
                )
            )
        for index, rule in enumerate(spec.rule_sources):
            name = f"{self.stack.stack_name}-{spec.logical_id}-{index}"[:70]
            self.subscriptions.append(EventRuleSubscription(self.endpoint, runtime, rule, name))
        for stream in spec.stream_sources:
            self.streams.append(DynamoStreamEventSourceMapping.for_endpoint(self.endpoint, runtime, stream))
        for expression in spec.schedules:
            every_s = self.options.schedule_every_s or schedule_seconds(expression)
            if every_s:
                self.schedules.append(ScheduledInvocation(runtime, every_s, self.endpoint.region))

    def _subscribe_consumers(self) -> list[str]:
        """One queue per custom bus that receives our inventory events, as a downstream consumer would."""
        from bincount.inventory_events import SOURCE  # the publisher's own constant

        return [
            subscribe_queue(
                self.endpoint.client("sqs"),
                self.endpoint.client("events"),
                f"{self.stack.stack_name}-consumer-{i}",
                bus,
                {"source": [SOURCE]},
            )[0]
            for i, bus in enumerate(self.wiring.bus_names)
        ]

    # -- workers ----------------------------------------------------------------------------------

    def start(self) -> None:
        loops: list[tuple[str, Callable[[], int]]] = []
        for mapping in self.mappings:
            loops.append((f"esm-{mapping.function.name}", self._timed(mapping.poll_once, "batcher")))
        for subscription in self.subscriptions:
            loops.append(
                (f"rule-{subscription.function.name}", self._timed(subscription.poll_once, "collector"))
            )
        for stream in self.streams:
            loops.append((f"stream-{stream.function.name}", stream.poll_once))
        for schedule in self.schedules:
            loops.append((f"schedule-{schedule.function.name}", schedule.poll_once))
        loops.append(("executor", self.executor.poll_once))
        loops.append(("consumer", self.drain_consumer_queues))
        for name, loop in loops:
            thread = threading.Thread(target=self._run, args=(name, loop), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _timed(self, poll: Callable[..., int], stage: str) -> Callable[[], int]:
        def run() -> int:
            handed = poll()
            if handed:
                self.clocks[stage].tick(handed)
            return handed

        return run

    def _run(self, name: str, loop: Callable[[], int]) -> None:
        while not self._stop.is_set():
            try:
                if not loop():
                    self._stop.wait(0.2)
            except Exception as error:  # keep the run alive; the report lists what went wrong
                log.exception("worker %s failed", name)
                self.worker_errors.append(f"{name}: {type(error).__name__}: {error}")
                self._stop.wait(1.0)

    def serve(
        self, artifact: Path, on_switch: Callable[[str], None] | None = None, drain_timeout_s: float = 600.0
    ) -> str:
        """Serve ``artifact`` without losing a record in flight: a new model server, answering
        /ping, takes every request from now on (``on_switch(url)`` tells the world, while the old
        server still answers); the previous one stops once its requests are done."""
        server = contextlib.ExitStack()
        try:
            url = server.enter_context(model_server(artifact, self.options, self.model_servers))
        except BaseException:
            server.close()
            raise
        self.servers[url] = server
        previous = self.invoker.switch(url)
        self.serving_url = url
        if on_switch is not None:
            on_switch(url)
        if not self.invoker.drain(previous, drain_timeout_s):
            log.warning("model server %s still busy after %.0f s: stopped anyway", previous, drain_timeout_s)
        old = self.servers.pop(previous, None)
        if old is not None:
            old.close()
        self.model_servers.supervisors.pop(previous, None)
        return url

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        self.executor.close()
        self._environment.close()
        reset_handler_caches()

    def stage_rates(self, images: int) -> dict[str, dict[str, float]]:
        """Images/s of each stage over the time it was busy (stages overlap, so spans are also given).

        ``span_s``: first to last activity of the stage; ``busy_s``: time inside the handler
        (functions), inside transform jobs (executor), or the upload span.
        """
        busy = {
            "upload": self.clocks["upload"].seconds,
            "transform": busy_seconds(self.executor.outcomes),
        }
        for stage, rt_names in (
            ("batcher", self._runtimes_of("sqs")),
            ("collector", self._runtimes_of("rule")),
        ):
            busy[stage] = sum(self.runtimes[name].busy_s for name in rt_names)
        return {
            stage: {
                "images": images,
                "busy_s": round(busy[stage], 2),
                "span_s": round(self.clocks[stage].seconds, 2),
                "images_per_s": round(images / busy[stage], 1) if busy[stage] > 0 else 0.0,
            }
            for stage in ("upload", "batcher", "transform", "collector")
        }

    def _runtimes_of(self, kind: str) -> set[str]:
        if kind == "sqs":
            return {mapping.function.name for mapping in self.mappings}
        return {subscription.function.name for subscription in self.subscriptions}

    def drain_consumer_queues(self) -> int:
        sqs = self.endpoint.client("sqs")
        received = 0
        for queue_url in self.consumer_queues:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                "Messages", []
            )
            for message in messages:
                self.consumed_events.append(json.loads(message["Body"]))
            if messages:
                handles = [message["ReceiptHandle"] for message in messages]
                entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(handles)]
                sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
            received += len(messages)
        return received

    # -- inputs and outcomes ----------------------------------------------------------------------

    def upload(self, key: str, body: bytes, content_type: str = "image/jpeg") -> None:
        self.endpoint.client("s3").put_object(
            Bucket=self.wiring.ingest_bucket, Key=key, Body=body, ContentType=content_type
        )
        self.clocks["upload"].tick()

    def image_records(self) -> dict[str, list[dict[str, Any]]]:
        """Every ``IMAGE#`` record in the counts table, grouped by image key.

        Polled while a run waits, so the table is looked at only
        after a collector invocation finished since the last look (only the collector writes
        image records), a look lists only the keys and when they were recorded, and only records
        not seen yet, or written again, are read in full: once, not once per poll.
        """
        if (generation := self._collector_generation()) != self._records_generation:
            self._records_generation = generation
            listed = {(item["pk"], item["sk"]): item for item in self._scan_records("pk, sk, recorded_at")}
            changed = [
                key
                for key, item in listed.items()
                if self._records.get(key, {}).get("recorded_at") != item.get("recorded_at")
            ]
            self._records = {key: self._records[key] for key in listed if key not in changed}
            self._records.update(self._read_records(changed))
        records: dict[str, list[dict[str, Any]]] = {}
        for plain in self._records.values():
            key = str(plain.get("image_key") or str(plain["sk"]).removeprefix("IMAGE#"))
            records.setdefault(key, []).append(plain)
        return records

    def _collector_generation(self) -> int:
        return sum(self.runtimes[name].completed for name in self._runtimes_of("rule"))

    def _scan_records(self, projection: str | None = None) -> Iterator[dict[str, Any]]:
        extra: dict[str, Any] = {} if projection is None else {"ProjectionExpression": projection}
        for page in (
            self.endpoint.client("dynamodb")
            .get_paginator("scan")
            .paginate(
                TableName=self.wiring.counts_table,
                FilterExpression="begins_with(sk, :image)",
                ExpressionAttributeValues={":image": {"S": "IMAGE#"}},
                **extra,
            )
        ):
            yield from (_plain(item) for item in page["Items"])

    def _read_records(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        client, table, found = self.endpoint.client("dynamodb"), self.wiring.counts_table, {}
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {
                table: {"Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys[start : start + 100]]}
            }
            while request:
                response = client.batch_get_item(RequestItems=request)
                for item in response["Responses"].get(table, []):
                    plain = _plain(item)
                    found[(plain["pk"], plain["sk"])] = plain
                request = response.get("UnprocessedKeys") or {}
        return found

    def dead_letters(self) -> list[str]:
        sqs = self.endpoint.client("sqs")
        bodies = []
        for url in self.wiring.dlq_urls:
            attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
            if int(attrs["Attributes"]["ApproximateNumberOfMessages"]):
                bodies.append(f"{url}: {attrs['Attributes']['ApproximateNumberOfMessages']} message(s)")
        return bodies


def _plain(item: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB's typed attribute values as plain Python values."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    plain = {}
    for name, value in item.items():
        converted = deserializer.deserialize(value)
        if hasattr(converted, "as_integer_ratio") and not isinstance(converted, int | float):
            converted = int(converted) if converted == int(converted) else float(converted)
        plain[name] = converted
    return plain


@contextlib.contextmanager
def model_server(
    artifact: Path, options: PipelineOptions, servers: ModelServers | None = None
) -> Iterator[str]:
    """A model server on ``artifact`` (unpacked as SageMaker fills /opt/ml/model), yielding its URL.

    The small server is supervised: restarted when it dies, each restart told to ``servers``.
    TorchServe restarts its own dead workers; its frontend is not supervised here.
    """
    log_dir = options.log_dir
    with tempfile.TemporaryDirectory(prefix="opt-ml-model-") as folder:
        model_dir = extract_model(artifact, Path(folder))
        serving_log = log_dir / "serving.log" if log_dir else None
        if options.server == "torchserve":
            serving = torchserve_process(model_dir, log_path=serving_log)
        else:
            serving = serving_process(
                model_dir,
                options.torch_threads,
                serving_log,
                on_restart=servers.restarted if servers else None,
                on_start=servers.started if servers else None,
            )
        with serving as url:
            yield url


@contextlib.contextmanager
def local_pipeline(options: PipelineOptions) -> Iterator[LocalPipeline]:
    """Everything up, yielded running; torn down in reverse order whatever happens."""
    log_dir = options.log_dir
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack_of_contexts:
        servers: dict[str, contextlib.ExitStack] = {}
        stack_of_contexts.callback(pipeline_servers_close, servers)
        server = contextlib.ExitStack()
        supervised = ModelServers()
        serving_url = server.enter_context(model_server(options.model_artifact, options, supervised))
        servers[serving_url] = server
        endpoint = stack_of_contexts.enter_context(
            moto_server(log_path=log_dir / "moto.log" if log_dir else None)
        )
        stack = LocalStack(endpoint, options.template, options.stack_name, options.parameters).create()
        pipeline = LocalPipeline(endpoint, stack, serving_url, options)
        pipeline.servers = servers
        pipeline.model_servers = supervised
        pipeline.start()
        stack_of_contexts.callback(pipeline.stop)
        yield pipeline


def pipeline_servers_close(servers: dict[str, contextlib.ExitStack]) -> None:
    """Stop every model server still up (the first one, or the last one a promotion started)."""
    for server in list(servers.values()):
        server.close()
    servers.clear()
