"""The documentation's generated pages: each is written from the code it describes, committed, and checked for
staleness by the tests (regenerated in memory and compared). `python -m tools.docs` rewrites them all;
`python -m tools.docs --check` only says which are stale.

- `config_reference.py`: docs/reference/configuration.md from the typed config model (stacks.config.AppConfig).
- `cli_reference.py`: docs/reference/cli.md from every command's argparse parser.
- `alarm_list.py`: docs/reference/alarms.md from the synthesised templates of each labelling mode.
- `cost_chart.py`: docs/assets/cost-per-1000-photos.svg from the cost model (tools/cost), written as SVG text.
- `pages.py`: the list of generated files and the write / check logic.
"""
