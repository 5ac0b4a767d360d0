"""The CDK app: one package per capability, composed by `photo_labeller_stack.PhotoLabellerStack` in the order
of the architecture diagram. Each package's `__init__.py` maps its modules and imports nothing (config/ re-exports
its model), so importing one module (the config model, the labels table's keys, serving.properties' reader) never
pulls in the constructs beside it.

    photo_labeller_stack.py  the composition root: one construct per capability, wired together
    config/             the typed configuration model, read once in app.py (CDK-free: tools import it)
    storage/            the image bucket, the labels table, the model store and registry
    serving/            the SageMaker endpoint, its rollout, serving.properties, async inference and scaling
    labelling/          the labeller Lambda and every path that feeds it: uploads, backfill, async, scheduled
    review/             the review page, its API, sign-in and history table
    monitoring/         the alarm topic, the alarms and the operations dashboard
    training_pipeline/  train, gate, probe, roll out and register a model (Step Functions)
    common/             building blocks with no capability of their own: constants, keys, encrypted logs, nag,
                        Lambda bundling and roles, the per-region container image tables

Capabilities import `common/` and `config/`, and each other only downwards: labelling and the training pipeline
use serving and storage; serving, labelling and the pipeline send alarms to monitoring's topic; monitoring graphs
review's metrics. `common/` imports no capability package (tests/stacks/test_layout.py holds both rules).
"""
