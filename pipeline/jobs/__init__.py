"""Jobs: the life of one indexing run (lease, heartbeat, progress, publish, failure), the reconciler, the sweeps.

Pure library: the task runner (Celery, the CLI) claims through :func:`claim`
or :func:`claim_here`, runs the indexer inside a :class:`Run`, and sends
messages where this package asks for a ``send`` callable.
"""

from pipeline.jobs.connection import open_job_connection
from pipeline.jobs.reconcile import SendIndex, reconcile
from pipeline.jobs.run import Retry, Run, RunReport, TimeLimit, claim, claim_here, fetch_source, skipped
from pipeline.jobs.sweep import sweep_claimed, sweep_leftovers

__all__ = [
    "Retry", "Run", "RunReport", "SendIndex", "TimeLimit", "claim", "claim_here", "fetch_source",
    "open_job_connection",
    "reconcile", "skipped", "sweep_claimed", "sweep_leftovers",
]
