"""Where a run's steps keep their outputs (Dagster's IO manager), chosen by the settings when a
run starts: files under DAGSTER_HOME (Dagster's own filesystem IO manager) by default, for one
host; dagster-aws's S3 IO manager when `TD_IO_S3_BUCKET` is set, for run workers on several
hosts (Kubernetes Jobs), so that a step re-run in another process, on another host, loads its
inputs. The persist phase never loads the derive phase's outputs (docs/architecture.md, "State
between runs"): only the steps of one run, and a re-run of one of them, read this store."""

from __future__ import annotations

import dagster as dg

from td_pipeline.settings import read_settings


class RunOutputStore(dg.ConfigurableIOManagerFactory[dg.IOManager]):
    """Local files, or S3 when `TD_IO_S3_BUCKET` names a bucket (read when a run starts)."""

    def create_io_manager(self, context: dg.InitResourceContext) -> dg.IOManager:
        settings = read_settings()
        if not settings.io_s3_bucket:
            return dg.FilesystemIOManager().create_io_manager(context)
        # Imported here: boto3 costs every run's start a few tenths of a second otherwise.
        from dagster_aws.s3 import S3PickleIOManager, S3Resource

        s3 = S3Resource(endpoint_url=settings.io_s3_endpoint_url or None)
        return S3PickleIOManager(
            s3_resource=s3, s3_bucket=settings.io_s3_bucket, s3_prefix=settings.io_s3_prefix
        ).create_io_manager(context)
