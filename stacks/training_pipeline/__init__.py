"""The training pipeline: Step Functions trains on P5, gates on accuracy, registers the model and rolls it out.

    ReadRequest → ValidateRequest → Train (sagemaker:createTrainingJob.sync, evaluation inside the job)
      → ReadMetrics (metrics.json from the model prefix) → AccuracyGate
      → [rollout: CheckEndpoint → CreateModel → CreateEndpointConfig → UpdateEndpoint (blue/green, auto-rollback
         on alarms) → poll DescribeEndpoint until InService → verify it runs the new config]
      → RegisterModel (ssm:PutParameter of the registry parameter) → Done

Model lifecycle (docs/training-pipeline.md, "Model lifecycle"): the registry is one SSM String parameter,
`/<name_prefix>/model/current` (stacks/storage/model_store.py), holding the S3 prefix of the last approved model.
The pipeline creates and overwrites it; CloudFormation never owns its value. With `training.serve_registered_model`
the endpoint's model URI is a CloudFormation parameter of type `AWS::SSM::Parameter::Value<String>` naming it:
CloudFormation re-reads it on every deploy and the CDK CLI never skips a deploy of a stack with such a parameter,
so a later `cdk deploy` serves the model the pipeline last approved instead of reverting the endpoint. The
parameter is written after a successful rollout only, so a model that SageMaker rolled back never becomes the one a
deploy would serve. An explicit `endpoint.model_data_uri` pins a model: the pipeline then trains, gates and
registers, but does not touch the endpoint.

One module per responsibility:
    pipeline.py        the construct: definition, state machine, log group, failure alarm
    request.py         ReadRequest / ValidateRequest, from request.jsonata and problems.jsonata
    train_step.py      the Train state (a CustomState: the L2 task cannot express spot, checkpoints, compression)
    probe_steps.py     the probe: a one-instance endpoint from the new config, the labeller's exact request
    rollout_steps.py   CheckEndpoint … RolloutStatus: the approved model onto the endpoint, blue/green
    served_gate.py     the served-model gate: the new model must beat the one it replaces
    roles.py           the training role and the state machine role's grants
    names.py           limits and fixed names
    training_asset.py  the training code as one S3 asset (sourcedir.tar.gz, built without Docker)
Its config section, `TrainingPipelineConfig` (`photo_labeler.training`), is declared with the others in
stacks/config/sections.py. This package imports nothing, so importing one module never pulls in the others.
"""
