"""The window state machine's states (stacks/labelling/window.py builds the state machine around them).

    Window -> Survey -> Decide -> CheckOverlap -> Overlap? -> ResolveModel -> Plan -> Photos?
      -> LabelOnSpot | DescribeSpotJob -> JobOutcome -> [LabelOnDemand | DescribeOnDemandJob -> JobOutcome]
      -> Report -> Done, or ReportFailedWindow -> WindowFailed

JSONata throughout: `$window` (its id and job names), `$survey`, `$plan`, `$model` and `$job` are variables
assigned by the states that learn them; the labelling job's request is stacks/labelling/job.job_request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_cdk import Aws
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks

from classification.labeller_environment import LabellerEnvironment
from stacks.labelling.job import job_name_pattern, job_request

if TYPE_CHECKING:
    from stacks.labelling.window import LabellingWindow

# Step Functions' own date formatting of the execution's start: the window id and its job names' suffix.
STAMP = "$fromMillis($toMillis($states.context.Execution.StartTime), '[Y0001][M01][D01]-[H01][m01][s01]')"


class WindowStates:
    """Builds the states inside `window` (their construct scope) from its config and resources."""

    def __init__(self, window: LabellingWindow) -> None:
        self.w = window

    def definition(self) -> sfn.IChainable:
        """The states of the module docstring, from Window to Done / WindowFailed."""
        cfg = self.w.config
        prefix = job_name_pattern(self.w.name_prefix)
        stamp = STAMP
        start = sfn.Pass.jsonata(
            self.w,
            "Window",
            comment='Name this window and its jobs; an input other than {"trigger": "backlog"} is a regular one',
            assign={
                "window": (
                    "{% ($in := $type($states.input) = 'object' ? $states.input : {}; $stamp := " + stamp + "; "
                    "{'trigger': $in.trigger = 'backlog' ? 'backlog' : 'schedule', 'id': $stamp, "
                    f"'spot_job': '{prefix}' & $stamp, 'on_demand_job': '{prefix}' & $stamp & '-od'}}) %}}"
                ),
                # Defined on every path, so the failure message can test them.
                "job": {},
                "failure": {},
            },
        )
        done = sfn.Succeed.jsonata(self.w, "Done", comment="The window's counts", outputs="{% $report %}")
        nothing = sfn.Succeed.jsonata(self.w, "NothingPending", comment="No photo waits: nothing starts")
        survey = self._invoke("Survey", {"action": "survey", "limit": cfg.backlog_threshold}, "survey")
        decide = sfn.Choice.jsonata(self.w, "Decide", comment="Start a job, or not")
        decide.when(sfn.Condition.jsonata("{% $survey.pending = 0 %}"), nothing)
        decide.when(
            sfn.Condition.jsonata(
                f"{{% $window.trigger = 'backlog' and $survey.pending < {cfg.backlog_threshold} "
                f"and $survey.oldest_age_seconds < {cfg.catch_up_seconds} %}}"
            ),
            sfn.Succeed.jsonata(
                self.w, "BelowThreshold", comment="A backlog check below the threshold, no window missed"
            ),
        )
        overlap = tasks.CallAwsService.jsonata(
            self.w,
            "CheckOverlap",
            comment="Windows never overlap: another running execution means this one ends",
            service="sfn",
            action="listExecutions",
            parameters={"StateMachineArn": "{% $states.context.StateMachine.Id %}", "StatusFilter": "RUNNING"},
            iam_resources=[self.w.state_machine_arn],
            iam_action="states:ListExecutions",
            assign={
                "others": "{% $count($states.result.Executions[ExecutionArn != $states.context.Execution.Id]) %}"
            },
        )
        running = sfn.Choice.jsonata(self.w, "Overlap?")
        running.when(
            sfn.Condition.jsonata("{% $others > 0 %}"),
            sfn.Succeed.jsonata(self.w, "WindowAlreadyRunning", comment="The running window takes these photos"),
        )
        settings = cfg.plan_settings()
        plan = self._invoke(
            "Plan", {"action": "plan", "window_id": "{% $window.id %}", "settings": settings}, "plan"
        )
        photos = sfn.Choice.jsonata(self.w, "Photos?")
        photos.when(sfn.Condition.jsonata("{% $plan.photos = 0 %}"), nothing)

        report = self._invoke("Report", {"action": "report", "window_id": "{% $window.id %}"}, "report")
        report_failed = self._invoke(
            "ReportFailedWindow", {"action": "report", "window_id": "{% $window.id %}"}, "report"
        )
        report.next(done)
        report_failed.next(
            sfn.Fail.jsonata(
                self.w,
                "WindowFailed",
                error="LabellingJobFailed",
                cause=(
                    "{% ($job.TrainingJobName ? 'labelling job ' & $job.TrainingJobName & ' ended ' & "
                    "$job.TrainingJobStatus & ' (' & $job.SecondaryStatus & ') ' & "
                    "($job.FailureReason ? $job.FailureReason : '') : 'the labelling job did not run: ' & "
                    "$string($failure)) & '; counts ' & $string($report) & '; unlabelled photos stay PENDING "
                    "for the next window' %}"
                ),
            )
        )
        outcome = sfn.Choice.jsonata(self.w, "JobOutcome", comment="Completed, Spot wait exceeded, or failed")
        outcome.when(sfn.Condition.jsonata("{% $job.TrainingJobStatus = 'Completed' %}"), report)
        if cfg.use_spot:
            photos.otherwise(
                self._job_state("LabelOnSpot", spot=True, outcome=outcome, report_failed=report_failed)
            )
        if cfg.on_demand_fallback or not cfg.use_spot:
            on_demand = self._job_state("LabelOnDemand", spot=False, outcome=outcome, report_failed=report_failed)
            if cfg.use_spot:
                # SecondaryStatus values: botocore's SageMaker model (sagemaker-2017-07-24, shape SecondaryStatus).
                outcome.when(
                    sfn.Condition.jsonata(
                        "{% $job.TrainingJobName = $window.spot_job and "
                        "$job.SecondaryStatus = 'MaxWaitTimeExceeded' %}"
                    ),
                    on_demand,
                )
            else:
                photos.otherwise(on_demand)
        outcome.otherwise(report_failed)

        running.otherwise(self._resolve_model(plan).next(photos))
        decide.otherwise(overlap.next(running))
        return start.next(survey).next(decide)

    def _invoke(self, state_id: str, payload: dict[str, Any], variable: str) -> tasks.LambdaInvoke:
        return tasks.LambdaInvoke.jsonata(
            self.w,
            state_id,
            lambda_function=self.w.function,
            payload=sfn.TaskInput.from_object(payload),
            assign={variable: "{% $states.result.Payload %}"},
        )

    def _resolve_model(self, plan: tasks.LambdaInvoke) -> sfn.IChainable:
        """The model this window labels with: the pinned URI, or the registry's value read now."""
        if self.w.registry is None:
            return sfn.Pass.jsonata(
                self.w,
                "ResolveModel",
                comment="endpoint.model_data_uri",
                assign={"model": self.w.pinned_model_uri},
            ).next(plan)
        read = tasks.CallAwsService.jsonata(
            self.w,
            "ResolveModel",
            comment="The model the training pipeline last approved (the registry parameter)",
            service="ssm",
            action="getParameter",
            parameters={"Name": self.w.registry.parameter_name},
            iam_resources=[self.w.registry.parameter_arn],
            iam_action="ssm:GetParameter",
            assign={"model": "{% $states.result.Parameter.Value %}"},
        )
        read.add_catch(
            sfn.Fail.jsonata(
                self.w,
                "NoModel",
                error="NoModelRegistered",
                cause=f"{self.w.registry.parameter_name} is unreadable (no model approved yet?); photos stay "
                "PENDING",
            ),
            errors=["States.ALL"],
        )
        return read.next(plan)

    def _job_state(
        self, state_id: str, *, spot: bool, outcome: sfn.Choice, report_failed: sfn.IChainable
    ) -> sfn.CustomState:
        labeller = self.w.labeller
        environment = LabellerEnvironment(
            table_name=labeller.table.table_name,
            endpoint_name="",
            model_id="{% $model %}",
            confidence_threshold=labeller.confidence_threshold,
            taxonomy_file=labeller.taxonomy_file,
            scheduled=True,
        ).to_environment()
        environment["AWS_DEFAULT_REGION"] = Aws.REGION
        job = sfn.CustomState(
            self.w,
            state_id,
            state_json={
                "Type": "Task",
                "Comment": ("Managed Spot" if spot else "On-demand") + " labelling job over the window's manifest",
                "Resource": f"arn:{Aws.PARTITION}:states:::sagemaker:createTrainingJob.sync",
                "Arguments": job_request(
                    self.w.config,
                    spot=spot,
                    role=self.w.job_role,
                    image_uri=self.w.image_uri,
                    code=self.w.code,
                    work_bucket=self.w.work_bucket,
                    data_key=labeller.data_key,
                    environment=environment,
                ),
                "Assign": {"job": "{% $states.result %}"},
            },
        )
        name = "$window.spot_job" if spot else "$window.on_demand_job"
        describe = tasks.CallAwsService.jsonata(
            self.w,
            "DescribeSpotJob" if spot else "DescribeOnDemandJob",
            comment="Why the job ended (.sync failed): Spot wait exceeded, stopped, failed, or never created",
            service="sagemaker",
            action="describeTrainingJob",
            parameters={"TrainingJobName": "{% " + name + " %}"},
            iam_resources=[self.w.job_arn],
            iam_action="sagemaker:DescribeTrainingJob",
            assign={"job": "{% $states.result %}"},
        )
        describe.add_catch(report_failed, errors=["States.ALL"], assign={"failure": "{% $states.errorOutput %}"})
        job.add_catch(describe, errors=["States.ALL"], assign={"failure": "{% $states.errorOutput %}"})
        describe.next(outcome)
        return job.next(outcome)
