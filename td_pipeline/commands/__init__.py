"""Subcommands of the `td-pipeline` command, one module each (each exposes `register`)."""
