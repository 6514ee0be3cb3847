"""Dagster: partitions, resources, assets, checks, sensors, schedules and the Definitions."""
