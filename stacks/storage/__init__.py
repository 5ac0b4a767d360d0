"""Where photos, their labels and the models live.

photo_store.py   the Storage construct: the image bucket (+ access-log bucket), the labels table, the app's key
labels_table.py  the labels table's keys and indexes as plain data (CDK-free: local tools and tests build the
                 same table from it)
model_store.py   the training bucket (datasets, base weights, models, checkpoints) and the model registry
derived_bucket.py a capability's own bucket of expiring derived objects (backfill results, async inference,
                 labelling windows)
"""
