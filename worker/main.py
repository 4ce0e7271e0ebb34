"""`prefloop worker`: an RQ worker on prefloop's queues.

torch and transformers are imported here, in the parent, before RQ forks a work-horse per job, so
each job starts without paying for the imports; CUDA is never initialised in the parent (nothing
here touches `torch.cuda`), so every work-horse can use the GPU. SIGTERM is RQ's warm shutdown:
the running job finishes first (compose gives the worker a long stop_grace_period); a second
signal or a kill leaves the job in RQ's started registry, and RQ marks it abandoned/failed and
retries it per its Retry policy, while the previously published versions keep serving.
"""

from __future__ import annotations

import logging
import socket
import os

from prefloop.logs import setup_logging
from prefloop.queue import JobQueue
from prefloop.settings import Settings
from worker import runtime

logger = logging.getLogger(__name__)


def run_worker(settings: Settings, *, queues: list[str] | None = None, burst: bool = False, simple: bool = False,
               name: str | None = None) -> bool:
    import torch  # noqa: F401  (imported before forking; CUDA stays untouched in this process)
    import transformers  # noqa: F401
    from rq import SimpleWorker, Worker
    from rq.serializers import JSONSerializer

    setup_logging(settings.log_level)
    runtime.init(settings)
    jq = JobQueue(settings)
    names = [f"{settings.queue_prefix}-{q}" for q in queues] if queues else jq.queue_names()
    worker_class = SimpleWorker if simple else Worker
    worker = worker_class(
        [jq.queue(n.removeprefix(f"{settings.queue_prefix}-")) for n in names],
        connection=jq.connection,
        serializer=JSONSerializer,
        name=name or f"prefloop-{socket.gethostname()}-{os.getpid()}",
    )
    logger.info("worker %s listening on %s", worker.name, ", ".join(names))
    return worker.work(burst=burst, with_scheduler=True, logging_level=settings.log_level)
