"""Pure domain: value objects, the task graph, proposal parsing, prompt and events.

Imports nothing of ours outside this package.
"""
