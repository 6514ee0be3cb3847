"""Dev tools, not the product: the demo, the benchmarks and the runner of Dagster's processes
they and the end-to-end tests share. They run from a checkout (the repository's
`workspace.yaml` and `dagster.yaml`) with the `sandbox` extra installed."""
