"""The CDK app's constructs: one module per capability, composed by `photo_labeller_stack.PhotoLabellerStack` in
the order of the README's diagram.

- Capabilities: `storage.py` (image bucket, labels table from `labels_table.py`), `model_store.py`,
  `inference_endpoint.py` + `rollout.py`, `upload_path.py`, `backfill.py` (both labellers' Lambda:
  `labeller_function.py`), `training_pipeline/`, `review.py` (+ `review_site.py`, `review_parts.py`),
  `monitoring.py` (+ `monitoring_metrics.py`, `monitoring_dashboard.py`), `async_inference.py`,
  `async_scaling.py` and `async_label_writer.py` for `endpoint.mode: async`, `labelling_window.py` (+
  `labelling_window_states.py`, `labelling_job.py`, `labelling_job_code.py`) for `endpoint.mode: scheduled`.
- The config model: `config.py` declares every section (`config_sections.py`), `config_parsing.py` converts and
  checks; `constants.py` holds fixed names.
- Building blocks: `encrypted_logs.py`, `lambda_role.py`, `key_policy.py`, `container_images.py` (+ the per-region
  tables `lmi_image.py`, `training_image.py`, `data/`), `nag.py`; synth-time checks (`endpoint_load.py`,
  `serving_properties.py`); Docker-free bundling (`lambda_bundling.py`, `training_asset.py`).
"""
