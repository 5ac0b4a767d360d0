"""The served-model gate: a fine-tune is rolled out only if it beats the model the endpoint serves now.

    RequestValid → ReadServedModel (the registry's value: what the endpoint serves) → Train (the served model is
      the job's `served` channel; evaluate.py answers the same validation photos with it, in its own profile)
      → ReadMetrics → AccuracyGate → ServedModelGate → [rollout]

On day one the endpoint serves the staged base model (docs/day-one.md); later, the last fine-tune. The comparison
is made inside the training job, on the same held-out photos, because only there are both models and the photos
together; metrics.json's `baseline.better` (strictly higher constrained accuracy) is the verdict. A registry that
names no model yet (the parameter does not exist) means nothing is served: the gate lets the model through.

Used only when the pipeline rolls out (the endpoint serves the registry): with a pinned model nothing is
compared, as nothing is replaced.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.storage.model_store import ModelStore

# Step Functions names an AWS SDK integration's error `<Service>.<Error>Exception`, the suffix added even where
# the API's own code has none (SSM's is ParameterNotFound): docs.aws.amazon.com/step-functions/latest/dg/
# supported-services-awssdk.html, "Using AWS SDK service integrations".
PARAMETER_NOT_FOUND = "Ssm.ParameterNotFoundException"
# metrics.json (training_job/evaluate.py) → the fields ReadMetrics keeps for this gate.
METRICS_FIELDS = '"baseline_accuracy": $m.baseline.accuracy, "better_than_served": $m.baseline.better'


def build_read_served_model(scope: Construct, *, store: ModelStore, train: sfn.IChainable) -> sfn.IChainable:
    """ReadServedModel → Train, assigning `$served` (the served model's S3 prefix, or null when none is)."""
    read = tasks.CallAwsService.jsonata(
        scope,
        "ReadServedModel",
        comment="The registry names the model the endpoint serves: the fine-tune must beat it",
        service="ssm",
        action="getParameter",
        parameters={"Name": store.parameter_name},
        iam_resources=[store.parameter_arn],
        assign={"served": "{% $states.result.Parameter.Value %}"},
        outputs="{% $states.input %}",
    )
    # Retriers are matched in order: a missing parameter is an answer, not a fault, so it is never retried.
    read.add_retry(errors=[PARAMETER_NOT_FOUND], max_attempts=0)
    read.add_retry(errors=["States.ALL"], max_attempts=3, interval=Duration.seconds(5), backoff_rate=2)
    nothing_served = sfn.Pass.jsonata(
        scope,
        "NothingServedYet",
        comment="No model registered yet: nothing to compare with",
        assign={"served": "{% null %}"},
    )
    read.add_catch(nothing_served, errors=[PARAMETER_NOT_FOUND])
    read.add_catch(
        sfn.Fail.jsonata(
            scope,
            "ServedModelUnknown",
            error="ServedModelUnknown",
            cause='{% "the registry ' + store.parameter_name + " cannot be read, so the model to beat is "
            'unknown; nothing was started: " & $states.input.Cause %}',
        ),
        errors=["States.ALL"],
    )
    nothing_served.next(train)
    return read.next(train)


def build_served_gate(scope: Construct, *, rollout: sfn.IChainable) -> sfn.Choice:
    """ServedModelGate: NotBetterThanServed when a model is served and metrics.json does not say this one beats
    it; on to `rollout` otherwise."""
    not_better = sfn.Fail.jsonata(
        scope,
        "NotBetterThanServed",
        error="NotBetterThanServed",
        cause='{% "validation accuracy " & $string($metrics.accuracy) & ($exists($metrics.baseline_accuracy) ? '
        '" does not beat the served model\'s " & $string($metrics.baseline_accuracy) : " was not compared with '
        'the served model") & " on the same photos (served: " & $served & "); the model stays at " & '
        '$training.model_data_uri & " and is not rolled out or registered" %}',
    )
    # `$served` is a string only when a model is served; `= true` is false for a missing verdict too.
    beaten = '{% $type($served) = "string" and $not($metrics.better_than_served = true) %}'
    return (
        sfn.Choice.jsonata(scope, "ServedModelGate", comment="Roll out only a model better than the served one")
        .when(sfn.Condition.jsonata(beaten), not_better)
        .otherwise(rollout)
    )


__all__ = ["METRICS_FIELDS", "PARAMETER_NOT_FOUND", "build_read_served_model", "build_served_gate"]
