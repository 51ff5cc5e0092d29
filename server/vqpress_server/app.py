"""The composition root: settings -> artifact store -> job table -> executor -> servicer -> gRPC server.

Tests build the same graph with ``Settings(data_dir=tmp_path, port=0)``. The gRPC process only
validates, stores, enqueues and streams; all torch work runs in the executor's workers (local worker
processes, or actors of a Ray cluster: see jobs/executor.py).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from typing import IO

from .artifacts.store import ArtifactStore
from .jobs.executor import Executor, build_executor
from .jobs.table import JobTable
from .locks import hold_server_lock, release
from .rpc.server import RpcServer, create_server, set_serving
from .rpc.servicer import VqpressServicer
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    store: ArtifactStore
    jobs: JobTable
    workers: Executor
    rpc: RpcServer
    lock: IO[str] | None = field(default=None, repr=False)  # the data directory's server lock

    @property
    def port(self) -> int:
        return self.rpc.port

    def start(self) -> None:
        """Start the workers, then accept calls; health turns SERVING."""
        try:
            self.workers.start()
            self.rpc.server.start()
        except BaseException:
            self.workers.stop()
            raise
        set_serving(self.rpc, True)
        log.info("vqpress serving on %s:%d (%s)", self.settings.host, self.port, self.workers.describe())

    def stop(self, grace: float = 5.0) -> None:
        """Health turns NOT_SERVING; while calls in flight get ``grace`` seconds, the workers stop
        (a job they were running goes back to the queue, to run first at the next start)."""
        set_serving(self.rpc, False)
        self.workers.begin_stop()
        rpc_stopped = self.rpc.server.stop(grace)
        self.workers.stop()
        rpc_stopped.wait()
        self.jobs.close()
        release(self.lock)
        self.lock = None
        log.info("stopped")

    def wait(self) -> None:
        """Block until the server has stopped."""
        self.rpc.server.wait_for_termination()


def build_app(settings: Settings) -> App:
    """The graph, over a data directory locked for this server (raises DataDirInUse when another
    server has it, before anything in it is touched; OSError when the port is taken)."""
    lock = hold_server_lock(settings.data_dir)
    try:
        store = ArtifactStore(settings.artifacts_dir, settings.max_artifact_bytes, settings.digest_function)
        jobs = JobTable(settings.jobs_db, max_attempts=settings.max_attempts, poll_s=settings.poll_s)
        workers = build_executor(settings)
        servicer = VqpressServicer(
            settings, store, jobs, workers.notify, devices=workers.devices, stream_renders=workers.streams_renders
        )
        rpc = create_server(servicer, settings)
    except BaseException:
        release(lock)
        raise
    return App(settings, store, jobs, workers, rpc, lock)


def serve(settings: Settings) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully; a second signal exits at once.

    Raises OSError (DataDirInUse included) when the server cannot start: the port is taken, or
    another server uses the data directory.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = build_app(settings)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        if stopping.is_set():
            # Asked twice: stop now. Workers notice their server is gone and hand their jobs back.
            os._exit(128 + signum)
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    app.start()
    stopping.wait()
    log.info("stopping")
    app.stop()
