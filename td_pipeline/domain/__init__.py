"""Pure domain: value objects, the task graph, proposal parsing, the prompt and events. Imports nothing of ours."""
