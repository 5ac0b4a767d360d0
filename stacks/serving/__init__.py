"""The SageMaker endpoint and what runs on it.

inference_endpoint.py  the real-time or async endpoint: DJL LMI + vLLM, autoscaling, container logs
rollout.py             how a model change reaches the endpoint: blue/green policy and rollback alarms
serving_properties.py  model_code/serving.properties -> the container's environment and vLLM's engine args
                       (CDK-free: the local engine and the labelling job import it)
endpoint_load.py       synth-time check: the labellers never keep more in flight than the engines batch
async_inference.py     endpoint.mode async: the request/response bucket and its notifications
async_scaling.py       an async endpoint's scaling on its backlog, to zero and back
"""
