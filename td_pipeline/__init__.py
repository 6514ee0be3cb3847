"""td-pipeline: LLM task derivation for planning stories, as a Dagster asset pipeline."""
