"""The labelling job of endpoint.mode scheduled (docs/scheduled-mode.md): a SageMaker training job on managed Spot
whose container is the endpoint's LMI image, running vLLM's offline engine over a window's manifest.

- `run`: the entry point (`python -m labelling_job.run`), the loop over the manifest, checkpointed per batch.
- `job_environment`: where SageMaker (or a local run's `SM_*` variables) puts the channels, hosts and checkpoints.
- `engine`: vLLM's offline engine configured by model_code/serving.properties, answering the Lambda's requests.
- `progress`: the checkpoint (finished photo versions, per-host counts) that survives a Spot interruption.

The bundle (stacks/labelling/job.py) holds this package, lambda/*.py at its root (the labeller's own code),
classification/, stacks/serving/serving_properties.py with model_code/serving.properties, and the pinned boto3 of
requirements.txt. Standard library only in this file.
"""
