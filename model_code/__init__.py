"""Serving: `serving.properties` for the DJL LMI (vLLM) endpoint, and the same engine (vLLM, CPU build) locally."""
