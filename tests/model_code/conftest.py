"""Serving tests use the session fixtures of tests/conftest.py: `trained_model` and `vllm_server` (real vLLM)."""
