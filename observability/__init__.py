"""Dashboards and alert rules as code: `python -m observability` writes the committed files."""
