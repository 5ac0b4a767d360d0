"""Building blocks shared by every capability; this package imports none of them.

constants.py        literals with units and fixed names (CDK-free: the serving venv and the labelling job
                    import it)
nag.py              cdk-nag acknowledgements, each with its reason
key_policy.py       confused-deputy conditions on the statements the CDK adds to key policies
encrypted_logs.py   log groups encrypted with the app's key, admitted by their exact ARN
lambda_role.py      a Lambda execution role that writes to its own log group only
lambda_bundling.py  Docker-free bundling of Lambda code: pinned wheels, then the sources
container_images.py per-region Deep Learning Container image URIs and the grant to pull them
lmi_image.py        the DJL LMI image per region (data/djl_lmi_images.json)
training_image.py   the Hugging Face training image per region (data/hf_training_images.json)
sagemaker_jobs.py   what every SageMaker training job shares (the pipeline's and the labelling windows'): fixed
                    names, ARNs, the job role's logs and metrics, a state machine's .sync grants
data/               the committed image tables and the scripts that refresh them
"""
