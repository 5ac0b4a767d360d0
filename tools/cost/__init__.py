"""What labelling photos costs: a saturated backlog (backlog.py), the whole system under upload traffic in both
endpoint modes (system.py), the defaults the measurements support (sizing.py). Prices: prices.json. CLI: cli.py,
run as `python -m tools.cost_estimate`. The reasoning: docs/cost-model.md."""
