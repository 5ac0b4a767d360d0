"""Serving: `serving.properties` for the DJL LMI (vLLM) endpoint, and a local CPU stand-in for it."""
