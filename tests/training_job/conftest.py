"""Training tests use the session fixtures of tests/conftest.py (tiny model, photos, dataset, trained model)."""
