"""The backfill: a Step Functions Distributed Map that feeds existing photos to the labeller's core in batches.

    input  {"prefix": "archive/2019/"}                         list the image bucket under a prefix
           {"manifest_key": "inventory/.../manifest.json"}     or read an S3 Inventory report (CSV) of it
           optional: "reclassify": true, "max_concurrency": N (<= backfill.max_concurrency)

    CheckInput ─► ListPhotos | ReadInventory (Distributed Map, batches of items_per_batch)
                    └─ LabelBatch: Lambda handler.backfill_handler, Retry on TransientBatchError with backoff
                  ─► Summary: DescribeMapRun's item counts + where the per-batch results were written

Why it is shaped like this:
- The item processor is the upload labeller's own code asset with `handler.backfill_handler`: same core, same
  conditional writes, so a photo already labelled at the same version is skipped with one DynamoDB read. A
  stopped backfill is resumed by starting it again (or redriving it); finished work is never redone.
- The handler labels a batch's items one after another, so photos in flight on the endpoint = map concurrency.
  That is the only throughput knob: the endpoint's autoscaling sets the pace (latency rises, the map slows down).
- Child workflows are STANDARD, not EXPRESS: a batch's Lambda may run up to 15 min and its retries wait through
  an endpoint scale-out (~10 min), past Express's 5-minute limit. The cost is a few state transitions per batch.
- Failed batches (after retries) are listed by the ResultWriter in a results bucket. The map fails only above
  `tolerated_failure_percentage`; a failed (or stopped) execution is redriven (`python -m tools.backfill
  redrive`: only its failed batches run again), a succeeded one with tolerated failures is simply started again.
- The CDK item readers grant s3:ListBucket on the whole bucket and s3:GetObject on every object of the manifest
  bucket; `_ScopedItemReader` replaces those grants with prefix-scoped ones.
"""

from __future__ import annotations

import json
from typing import Any

import jsii
from aws_cdk import ArnFormat, Duration, FeatureFlags, Fn, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.common.encrypted_logs import encrypted_log_group
from stacks.common.nag import acknowledge, nag_resource
from stacks.config import BackfillConfig
from stacks.labelling.labeller_function import LabellerFunction, LabellerProps, photo_list_statement
from stacks.storage.derived_bucket import derived_bucket

# --- literals with units --------------------------------------------------------------------------------------
BACKFILL_HANDLER = "handler.backfill_handler"  # docs/interfaces.md
# Its own `service` dimension: backfill labels must not hide a stalled upload path from the stall alarm, and the
# dashboard shows both paths side by side.
BACKFILL_SERVICE_NAME = "photo-labeler-backfill"
TRANSIENT_BATCH_ERROR = "TransientBatchError"  # the class name lambda/handler.py raises: the Lambda error type
RESULTS_PREFIX = "backfill-results"
RESULTS_ACCESS_LOG_PREFIX = "backfill-results/"
RETRY_BACKOFF_RATE = 2.0
RETRY_MAX_DELAY_SECONDS = 600  # one wait never exceeds an endpoint scale-out
RESULT_WRITER_V2_FLAG = "@aws-cdk/aws-stepfunctions:useDistributedMapResultWriterV2"


@jsii.implements(sfn.IItemReader)
class _ScopedItemReader:
    """A CDK item reader whose rendering is kept but whose IAM grants are replaced by narrower ones."""

    def __init__(self, inner: sfn.IItemReader, statements: list[iam.PolicyStatement]) -> None:
        self._inner = inner
        self._statements = statements

    @property
    def bucket(self) -> s3.IBucket:
        return self._inner.bucket

    @property
    def bucket_name_path(self) -> str | None:
        return self._inner.bucket_name_path

    @property
    def resource(self) -> str:
        return self._inner.resource

    @property
    def max_items(self) -> int | None:
        return self._inner.max_items

    def render(self, query_language: sfn.QueryLanguage | None = None) -> Any:
        return self._inner.render(query_language)

    def provide_policy_statements(self) -> list[iam.PolicyStatement]:
        return list(self._statements)

    def validate_item_reader(self) -> list[str]:
        return list(self._inner.validate_item_reader())


class Backfill(Construct):
    """State machine + backfill Lambda + results bucket. Start it with `python -m tools.backfill start`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: BackfillConfig,
        labeller: LabellerProps,
        access_log_bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        if labeller.endpoint is None and not labeller.scheduled:
            # Without an endpoint every batch would fail after its retries: the stack adds no backfill then. In
            # scheduled mode the backfill records PENDING photos for the windows and needs none.
            raise ValueError("the backfill needs an endpoint to label with (LabellerProps.endpoint)")
        self.config = config
        self._bucket = labeller.bucket
        self._data_key = labeller.data_key
        self.results_bucket: s3.Bucket = self._build_results_bucket(labeller.data_key, access_log_bucket)
        # "Default": the function, role and log group keep their logical IDs (see LabellerFunction). Same code
        # asset as the upload labeller, its other entry point; its own `service` dimension.
        self.labeller: LabellerFunction = LabellerFunction(
            self,
            "Default",
            props=labeller,
            handler=BACKFILL_HANDLER,
            description="Labels existing hotel photos in Distributed Map batches (backfill)",
            role_description=(
                "Photo labeller (backfill): read listed photos, invoke the endpoint, write labels, logs"
            ),
            log_group_name=f"/{labeller.name_prefix}/lambda/backfill",
            timeout_seconds=config.function_timeout_seconds,
            memory_mb=config.function_memory_mb,
            photo_prefix=config.source_prefix,
            photo_read_reason=(
                "The backfill reads any photo under backfill.source_prefix (one object per listed item); the "
                "prefix is the configured scope of the backfill."
            ),
            hotel_id_pattern=config.hotel_id_pattern,
            service_name=BACKFILL_SERVICE_NAME,
        )
        self.function: lambda_.Function = self.labeller.function
        self.log_group: logs.LogGroup = encrypted_log_group(
            self,
            "StateMachineLogs",
            # Under /aws/vendedlogs/ log delivery needs no entry in the account's CloudWatch Logs resource
            # policy (capped at 5,120 characters), AWS's advice for Step Functions logging.
            log_group_name=f"/aws/vendedlogs/states/{labeller.name_prefix}-backfill",
            key=labeller.data_key,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine: sfn.StateMachine = self._build_state_machine(labeller.name_prefix)

    # -- resources ------------------------------------------------------------------------------------------

    def _build_results_bucket(self, data_key: kms.IKey, access_log_bucket: s3.IBucket) -> s3.Bucket:
        # Its own bucket: the ResultWriter's grant (bucket/*) then covers only results, never photos.
        # Results are derived data (the labels table is the record), but an operator may still be redriving.
        return derived_bucket(
            self,
            "ResultsBucket",
            key=data_key,
            access_log_bucket=access_log_bucket,
            access_log_prefix=RESULTS_ACCESS_LOG_PREFIX,
            expiry_rule_id="expire-backfill-results",
            expire_after_days=self.config.results_retention_days,
        )

    # -- the state machine ----------------------------------------------------------------------------------

    def _build_state_machine(self, name_prefix: str) -> sfn.StateMachine:
        cfg = self.config
        invalid = self._fail(
            "InvalidInput",
            'Start a backfill with {"prefix": "<key prefix>"} or {"manifest_key": "<.../manifest.json>"}, '
            f'optionally "reclassify": true|false and "max_concurrency": 1..{cfg.max_concurrency}; the prefix '
            f"must start with {cfg.source_prefix!r}, a manifest key with {cfg.inventory_prefix!r} and end in "
            "manifest.json.",
        )
        state_machine_name = f"{name_prefix}-backfill"
        summary = self._summary(state_machine_name)
        list_map = self._map(
            "ListPhotos",
            sfn.S3ObjectsItemReader(bucket=self._bucket, prefix=sfn.JsonPath.string_at("$.prefix")),
            [photo_list_statement(self._bucket, cfg.source_prefix)],
        ).next(summary)

        check = sfn.Choice(self, "CheckInput", comment="Refuse malformed input before anything is listed")
        check.when(sfn.Condition.not_(sfn.Condition.is_boolean("$.reclassify")), invalid)
        check.when(sfn.Condition.not_(sfn.Condition.is_numeric("$.max_concurrency")), invalid)
        check.when(
            sfn.Condition.or_(
                sfn.Condition.number_less_than("$.max_concurrency", 1),
                sfn.Condition.number_greater_than("$.max_concurrency", cfg.max_concurrency),
            ),
            invalid,
        )
        # Rules are tried in order and a type test comes before every comparison on the same field, so no
        # comparison ever meets a missing or mistyped value (that would be a runtime error, not InvalidInput).
        check_prefix = sfn.Choice(self, "CheckPrefix")
        check_prefix.when(sfn.Condition.not_(sfn.Condition.is_present("$.prefix")), invalid)
        check_prefix.when(sfn.Condition.not_(sfn.Condition.is_string("$.prefix")), invalid)
        check_prefix.when(sfn.Condition.string_matches("$.prefix", f"{cfg.source_prefix}*"), list_map)
        check_prefix.otherwise(invalid)
        if cfg.inventory_bucket is None:
            # Straight to the Fail state: a Choice needs at least one rule (ASL), and there is nothing to test.
            manifest_branch: sfn.IChainable = self._fail(
                "ManifestInputDisabled",
                "Set backfill.inventory_bucket (and inventory_prefix) in the CDK config and deploy to start a "
                "backfill from an S3 Inventory manifest.",
            )
        else:
            check_manifest = sfn.Choice(self, "CheckManifest")
            check_manifest.when(sfn.Condition.not_(sfn.Condition.is_string("$.manifest_key")), invalid)
            check_manifest.when(
                sfn.Condition.string_matches("$.manifest_key", f"{cfg.inventory_prefix}*manifest.json"),
                self._manifest_map().next(summary),
            )
            check_manifest.otherwise(invalid)
            manifest_branch = check_manifest
        check.when(sfn.Condition.is_present("$.manifest_key"), manifest_branch)
        check.otherwise(check_prefix)

        # Defaults for the optional fields (JSONPath has no "value or default"): a Choice and a Pass each.
        default_concurrency = sfn.Choice(self, "MaxConcurrencyGiven?")
        default_concurrency.when(sfn.Condition.is_present("$.max_concurrency"), check)
        default_concurrency.otherwise(
            sfn.Pass(
                self,
                "DefaultMaxConcurrency",
                result=sfn.Result.from_number(cfg.max_concurrency),
                result_path="$.max_concurrency",
            ).next(check)
        )
        default_reclassify = sfn.Choice(self, "ReclassifyGiven?")
        default_reclassify.when(sfn.Condition.is_present("$.reclassify"), default_concurrency)
        default_reclassify.otherwise(
            sfn.Pass(
                self, "DefaultReclassify", result=sfn.Result.from_boolean(False), result_path="$.reclassify"
            ).next(default_concurrency)
        )

        state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name,
            comment="Label existing photos: Distributed Map over a prefix listing or an S3 Inventory manifest",
            definition_body=sfn.DefinitionBody.from_chainable(default_reclassify),
            state_machine_type=sfn.StateMachineType.STANDARD,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            encryption_configuration=sfn.CustomerManagedEncryptionConfiguration(self._data_key),
        )
        self._acknowledge_state_machine(state_machine, state_machine_name)
        return state_machine

    def _fail(self, error: str, cause: str) -> sfn.Fail:
        return sfn.Fail(self, error, error=error, cause=cause)

    def _map(
        self,
        state_id: str,
        reader: sfn.IItemReader,
        statements: list[iam.PolicyStatement],
        *,
        batch_input: dict[str, Any] | None = None,
    ) -> sfn.DistributedMap:
        cfg = self.config
        distributed_map = sfn.DistributedMap(
            self,
            state_id,
            # Items go to the handler as the reader emits them (no ItemSelector): a path to a field that some
            # item lacks would fail the whole map run, while the handler tolerates missing optional fields.
            item_reader=_ScopedItemReader(reader, statements),
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=cfg.items_per_batch,
                # Rendered as is (no JsonPath token handling), hence the literal ".$" key.
                batch_input={
                    "bucket": self._bucket.bucket_name,
                    "reclassify.$": "$.reclassify",
                    **(batch_input or {}),
                },
            ),
            max_concurrency_path="$.max_concurrency",
            tolerated_failure_percentage=cfg.tolerated_failure_percentage,
            map_execution_type=sfn.StateMachineType.STANDARD,
            **self._result_writer(),
            result_path="$.map",
        )
        distributed_map.item_processor(self._label_batch(state_id))
        return distributed_map

    def _result_writer(self) -> dict[str, Any]:
        # CDK renders ResultWriterV2 only under this feature flag and silently drops it otherwise; the
        # deprecated V1 renders the same JSON, so it is the fallback for apps without the flag.
        if FeatureFlags.of(self).is_enabled(RESULT_WRITER_V2_FLAG):
            return {"result_writer_v2": sfn.ResultWriterV2(bucket=self.results_bucket, prefix=RESULTS_PREFIX)}
        return {"result_writer": sfn.ResultWriter(bucket=self.results_bucket, prefix=RESULTS_PREFIX)}

    def _manifest_map(self) -> sfn.DistributedMap:
        cfg = self.config
        assert cfg.inventory_bucket is not None
        stack = Stack.of(self)
        inventory_bucket = s3.Bucket.from_bucket_name(self, "InventoryBucket", cfg.inventory_bucket)
        reports_arn = stack.format_arn(
            service="s3",
            region="",
            account="",
            resource=cfg.inventory_bucket,
            resource_name=f"{cfg.inventory_prefix}*",
        )
        distributed_map = self._map(
            "ReadInventory",
            sfn.S3ManifestItemReader(bucket=inventory_bucket, key=sfn.JsonPath.string_at("$.manifest_key")),
            # The manifest and the CSV data files it lists; nothing else in that bucket.
            [iam.PolicyStatement(actions=["s3:GetObject"], resources=[reports_arn])],
            # Inventory rows carry their own Bucket, so a report of another bucket fails (AccessDenied) instead
            # of being looked up in ours. S3 Inventory CSV keys are URL-encoded: the handler decodes them.
            batch_input={"key_encoding": "url"},
        )
        acknowledge(
            self,  # the grant lands on the state machine's role
            f"AwsSolutions-IAM5[Resource::{nag_resource(self, reports_arn)}]",
            "The map reads the S3 Inventory manifest it is given and the CSV data files the manifest lists, all "
            "under backfill.inventory_prefix of the inventory bucket; their names are generated by S3.",
        )
        return distributed_map

    def _label_batch(self, map_id: str) -> tasks.LambdaInvoke:
        cfg = self.config
        invoke = tasks.LambdaInvoke(
            self,
            f"{map_id}LabelBatch",
            state_name=f"LabelBatch ({map_id})",
            lambda_function=self.function,
            payload_response_only=True,  # the handler's counts become the batch's result
            retry_on_service_exceptions=True,  # Lambda throttling/service errors, CDK's standard retry
        )
        if cfg.retry_attempts:
            invoke.add_retry(
                # Throttling is absent from CDK's service-exception retry; both wait out a busy period.
                errors=[TRANSIENT_BATCH_ERROR, "Lambda.TooManyRequestsException"],
                interval=Duration.seconds(cfg.retry_interval_seconds),
                max_attempts=cfg.retry_attempts,
                backoff_rate=RETRY_BACKOFF_RATE,
                max_delay=Duration.seconds(RETRY_MAX_DELAY_SECONDS),
                jitter_strategy=sfn.JitterType.FULL,
            )
        return invoke

    def _map_run_arn_pattern(self, state_machine_name: str) -> str:
        return Stack.of(self).format_arn(
            service="states",
            resource="mapRun",
            resource_name=f"{state_machine_name}/*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _summary(self, state_machine_name: str) -> tasks.CallAwsService:
        # The execution's output: the map run's final item counts next to where results/failures were written.
        return tasks.CallAwsService(
            self,
            "Summary",
            service="sfn",
            action="describeMapRun",
            parameters={"MapRunArn": sfn.JsonPath.string_at("$.map.MapRunArn")},
            iam_resources=[self._map_run_arn_pattern(state_machine_name)],
            iam_action="states:DescribeMapRun",
            result_selector={
                "itemCounts": sfn.JsonPath.object_at("$.ItemCounts"),
                "status": sfn.JsonPath.string_at("$.Status"),
                "mapRunArn": sfn.JsonPath.string_at("$.MapRunArn"),
            },
            result_path="$.summary",
        )

    def _acknowledge_state_machine(self, state_machine: sfn.StateMachine, state_machine_name: str) -> None:
        role = state_machine.role
        # Writing results to the SSE-KMS results bucket: S3 asks KMS for a data key on the caller's behalf.
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=[self._data_key.key_arn])
        )
        reasons = {
            f"{_nag_text(self, self.results_bucket.bucket_arn, s3_arn=True)}/*": (
                "The map run writes its result files (manifest, SUCCEEDED_n/FAILED_n json) under generated names "
                "into the dedicated results bucket, which holds nothing else."
            ),
            _nag_text(self, self._map_run_arn_pattern(state_machine_name)): (
                "The Summary state describes the map run this execution started; map run ARNs are generated, the "
                "grant is limited to this state machine's map runs."
            ),
            f"{_nag_text(self, self.function.function_arn)}:*": (
                "LambdaInvoke grants the function and its versions/aliases (ARN:*); it is the backfill function "
                "only."
            ),
            "*": (
                "Step Functions log delivery (logs:*LogDelivery, DescribeLogGroups, PutResourcePolicy) and X-Ray "
                "tracing support no resource-level permissions; CDK adds them for logging and tracing."
            ),
        }
        machine_name = _nag_text(self, _machine_name_token(state_machine))
        # Rendered like CDK's DistributedMapPolicy: literals in a pinned stack, pseudo parameters otherwise.
        placeholder = "MACHINE"
        executions = nag_resource(
            self,
            Stack.of(self).format_arn(
                service="states",
                resource="execution",
                resource_name=placeholder,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            ),
        ).replace(placeholder, machine_name)
        for suffix in (":*", "/*:*"):
            reasons[f"{executions}{suffix}"] = (
                "A Distributed Map starts, describes, stops and redrives child executions of its own state "
                "machine (generated execution names); CDK scopes the grant to this state machine's executions."
            )
        for resource, reason in reasons.items():
            acknowledge(state_machine, f"AwsSolutions-IAM5[Resource::{resource}]", reason)


def _machine_name_token(state_machine: sfn.StateMachine) -> str:
    # How CDK's DistributedMapPolicy derives the name: Fn::Select(6, Fn::Split(":", Ref(state machine))).
    return Fn.select(6, Fn.split(":", state_machine.state_machine_arn))


def _nag_text(scope: Construct, value: str, *, s3_arn: bool = False) -> str:
    """A (tokenized) value as cdk-nag spells it in a finding id; intrinsics nag_resource cannot render are JSON."""
    resolved = Stack.of(scope).resolve(value)
    if s3_arn and isinstance(resolved, dict) and "Fn::GetAtt" in resolved:
        # bucket_arn resolves to GetAtt Arn, but the ResultWriter's grant formats arn:...:s3:::<Ref bucket>.
        logical_id = resolved["Fn::GetAtt"][0]
        return f"arn:<AWS::Partition>:s3:::<{logical_id}>"
    try:
        return nag_resource(scope, value)
    except ValueError:
        return json.dumps(resolved, separators=(",", ":"))


__all__ = ["BACKFILL_SERVICE_NAME", "Backfill", "BackfillConfig"]
