"""Operator command-line tools (run as `python -m tools.<name> --help`); not part of the CDK app or the Lambda."""
