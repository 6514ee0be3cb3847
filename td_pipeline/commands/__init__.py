"""Subcommands a user runs against a real fleet or Dagster instance, one module each (each
exposes `register`; `td_pipeline/cli.py` imports only the one being run)."""
