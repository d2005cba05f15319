"""Executors: where ``zoo build`` trains its populations.

``zoo build`` plans populations, hands them to an executor and commits each result as it
comes back. Executors only run ``fn(shared, task)`` somewhere and return what it returns;
they never touch the zoo. The building process (the *driver*) holds the zoo's lock and is
the only one that writes it, through :class:`~catalog.writer.ZooWriter`, so there is never
more than one manifest writer however many processes or machines train.

Three executors:

- ``--workers 1`` (default): the driver trains the populations itself, one by one
  (:func:`make_executor` returns ``None``);
- ``--workers N|auto``: :class:`LocalPool`, N spawned processes on this machine
  (``concurrent.futures``);
- ``--executor ray``: :class:`RayExecutor`, populations are Ray tasks
  (``pip install 'weightzoo[ray]'``).

Why the default is one worker: ``auto`` would multiply the build's memory by the number of
cores without asking (each worker holds the dataset and its population's tensors), and on a
machine shared with other work it takes cores that are not free; a serial build is also the
one that behaves exactly like the builder always has. Asking for ``--workers auto`` is one
word.

Results come back in the order they finish (a finished population is committed at once, so a
driver killed afterwards loses none of it). Rows and weights do not depend on the order; only
which part file holds which population does.

Failures:

- a local worker that dies (killed, out of memory) breaks the pool; the results that
  arrived are committed, and the pool is started again for the populations not yet back, at
  most :data:`POOL_RESTARTS` times, then the build stops with an error saying to run it
  again (it resumes). Ray retries a task whose worker died by itself (its ``max_retries``).
- a driver killed with ``kill -9`` takes its local workers with it (each watches its parent
  and exits when it is gone); the zoo holds every population committed so far and the next
  ``zoo build`` resumes with the rest.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from catalog.errors import WeightzooError

#: The executors ``--executor`` accepts.
EXECUTORS = ("local", "ray")
#: How often a broken local pool is started again before the build gives up.
POOL_RESTARTS = 2
#: Seconds between a local worker's checks that the driver is still alive.
PARENT_POLL_SECONDS = 1.0
#: Environment variable that keeps a local Ray cluster on the loopback interface (Ray reads it
#: when imported; "0" makes every Ray server of this machine listen on 127.0.0.1 only).
RAY_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
RAY_INSTALL_HINT = ("--executor ray needs Ray, which is not installed; install it with "
                    "`pip install 'weightzoo[ray]'` (or `pip install ray`) on this machine and "
                    "on every machine of the cluster")

TaskFn = Callable[[Any, Any], Any]


def cpu_count() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def parse_workers(value: int | str | None) -> int:
    """The number of workers ``--workers`` asks for: a positive integer, or ``"auto"`` for one
    per core (:func:`cpu_count`); ``None`` means 1.

    Raises:
        WeightzooError: anything else.
    """
    if value is None:
        return 1
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return cpu_count()
        if text.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WeightzooError(f"--workers must be a positive integer or 'auto' (one per core), "
                             f"got {value!r}")
    return value


class Executor:
    """Runs ``fn(shared, task)`` for every task, somewhere, and yields the results.

    Use as a context manager: workers start on entry (or on first use) and are stopped on exit.
    """

    #: For messages: what trains the populations.
    label = "executor"

    def map_unordered(self, fn: TaskFn, shared: Any, tasks: Sequence[Any],
                      costs: Sequence[int] | None = None,
                      budget: float | None = None) -> Iterator[tuple[int, Any]]:
        """Yield ``(index into tasks, fn(shared, task))`` as each task finishes.

        Args:
            fn: a module-level function (it is pickled by reference).
            shared: data every task reads (e.g. the dataset), sent to each worker once.
            tasks: the tasks, each picklable.
            costs: bytes of memory each task plans to use (default: unknown).
            budget: most bytes the tasks running at once may plan to use; one task always
                runs (default: no limit). Local pools keep to it; Ray schedules by CPUs.
        """
        raise NotImplementedError

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (idempotent)."""


def make_executor(kind: str | None = None, workers: int | str | None = None,
                  address: str | None = None, threads: int = 1) -> Executor | None:
    """The executor ``zoo build`` options ask for, or ``None`` for a serial build in this
    process (``--workers 1`` without ``--executor``, the default).

    Args:
        kind: ``"local"`` (default) or ``"ray"``.
        workers: local: the number of processes (``"auto"``: one per core; default 1). Ray: the
            CPUs of the local cluster started for the build (default: all cores); not allowed
            with ``address``.
        address: Ray only: the cluster to connect to (default: ``RAY_ADDRESS`` if set, else a
            local cluster started for this build and stopped after it).
        threads: torch threads of each worker (and CPUs each Ray task asks for).

    Raises:
        WeightzooError: an unknown executor, a bad worker count, ``address`` without Ray, or
            Ray not installed.
    """
    kind = kind or "local"
    if kind not in EXECUTORS:
        raise WeightzooError(f"unknown executor {kind!r}; executors: {', '.join(EXECUTORS)}")
    if kind == "local":
        if address is not None:
            raise WeightzooError("--address names a Ray cluster; use it with --executor ray")
        n = parse_workers(workers)
        return None if n == 1 else LocalPool(n, threads)
    if address is not None and workers is not None:
        raise WeightzooError("--workers sets the size of a local Ray cluster; with --address the "
                             "cluster's own size decides, leave --workers out")
    return RayExecutor(address, None if workers is None else parse_workers(workers), threads)


# ================================================================================ local pool
_SHARED: Any = None


def _init_worker(parent: int, threads: int, shared: Any) -> None:
    """Set up a local worker: its torch threads, the shared data, and a watch on the driver."""
    import torch

    global _SHARED
    torch.set_num_threads(threads)
    _SHARED = shared

    def watch() -> None:  # an orphaned worker would train for nobody and hold memory
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="watch-driver", daemon=True).start()


def _run_local(fn: TaskFn, task: Any) -> Any:
    return fn(_SHARED, task)


class WorkerDiedError(WeightzooError):
    """Local workers kept dying (killed, or out of memory)."""


class LocalPool(Executor):
    """``workers`` spawned processes on this machine, each with ``threads`` torch threads.

    Spawned (not forked): a fork would copy the driver's torch thread pools and open files,
    which is unsafe. Each worker gets the shared data once, when it starts.

    Args:
        workers: processes.
        threads: torch threads per process.
    """

    def __init__(self, workers: int, threads: int = 1) -> None:
        self.workers = workers
        self.threads = threads
        self.label = f"{workers} local workers"
        self._pool: cf.ProcessPoolExecutor | None = None
        self.restarts = 0

    def _start(self, shared: Any) -> cf.ProcessPoolExecutor:
        ctx = multiprocessing.get_context("spawn")
        return cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                      initargs=(os.getpid(), self.threads, shared))

    def map_unordered(self, fn: TaskFn, shared: Any, tasks: Sequence[Any],
                      costs: Sequence[int] | None = None,
                      budget: float | None = None) -> Iterator[tuple[int, Any]]:
        costs = list(costs) if costs is not None else [0] * len(tasks)
        budget = float("inf") if budget is None else budget
        todo = list(range(len(tasks)))  # submitted in plan order
        todo.reverse()
        inflight: dict[cf.Future, int] = {}
        self._pool = self._start(shared)
        returned = 0  # results from the current pool
        while todo or inflight:
            used = sum(costs[i] for i in inflight.values())
            broken = False
            while todo and len(inflight) < self.workers and (
                    not inflight or used + costs[todo[-1]] <= budget):
                i = todo.pop()
                try:
                    fut = self._pool.submit(_run_local, fn, tasks[i])
                except cf.process.BrokenProcessPool:
                    # A worker died between the last result and this submit: the pool already
                    # knows it is broken and refuses new tasks. Restart it below.
                    todo.append(i)
                    broken = True
                    break
                inflight[fut] = i
                used += costs[i]
            done = cf.wait(inflight, return_when=cf.FIRST_COMPLETED)[0] if inflight and not broken else set()
            for fut in done:
                i = inflight.pop(fut)
                try:
                    result = fut.result()
                except cf.process.BrokenProcessPool:
                    broken = True
                    todo.append(i)
                    continue
                returned += 1
                yield i, result
            if broken:
                # Every other task of the broken pool fails too; keep what finished first.
                for fut in cf.as_completed(list(inflight)):
                    i = inflight.pop(fut)
                    if fut.exception() is None:
                        returned += 1
                        yield i, fut.result()
                    else:
                        todo.append(i)
                self._stop()
                if self.restarts >= POOL_RESTARTS:
                    hint = ("killed, or out of memory: try fewer --workers or a smaller "
                            "--max-population")
                    if not returned:
                        hint += ("; if they die at once, they may not start at all: a script "
                                 "that builds with workers must do so under "
                                 "`if __name__ == \"__main__\":`")
                    raise WorkerDiedError(
                        f"a build worker process died {self.restarts + 1} times ({hint}); every "
                        f"population that finished is in the zoo: run the same command again "
                        f"to train the other {len(todo)}")
                self.restarts += 1
                returned = 0
                todo.sort(reverse=True)
                self._pool = self._start(shared)
        self._stop()

    def _stop(self) -> None:
        """Kill the workers and reap them: either every result is in and they are idle (an
        orderly exit would only add seconds of interpreter teardown), or the build failed and
        nobody will commit what they are training."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for p in list((getattr(pool, "_processes", None) or {}).values()):
            if p.is_alive():
                p.kill()
        pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        self._stop()


# ================================================================================ ray
def import_ray(local_only: bool) -> Any:
    """``import ray``, with a message saying how to install it when it is missing.

    Args:
        local_only: keep a local cluster started by this process on 127.0.0.1 (see
            :data:`RAY_LOCAL_ONLY_ENV`; only effective when Ray is not imported yet).
    """
    if local_only and "ray" not in sys.modules:
        os.environ.setdefault(RAY_LOCAL_ONLY_ENV, "0")
    try:
        import ray
    except ImportError as e:
        raise WeightzooError(RAY_INSTALL_HINT) from e
    return ray


def _run_ray(fn: TaskFn, shared: Any, task: Any, threads: int) -> Any:
    import torch

    torch.set_num_threads(threads)
    return fn(shared, task)


class RayExecutor(Executor):
    """Populations as Ray tasks, each asking for ``threads`` CPUs.

    Every machine of the cluster needs weightzoo (the same version) and its dependencies
    installed. The shared data is put in Ray's object store once; results come back to the
    driver, which writes them.

    Args:
        address: the cluster (``ray.init(address=...)``); ``None``: ``RAY_ADDRESS`` if set,
            else a local cluster started for this build (listening on 127.0.0.1 only, no
            dashboard) and stopped after it.
        workers: CPUs of that local cluster (default: all cores).
        threads: torch threads (and Ray CPUs) per task.
    """

    def __init__(self, address: str | None = None, workers: int | None = None,
                 threads: int = 1) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.workers = workers
        self.threads = threads
        self.label = f"Ray cluster at {self.address}" if self.address else "a local Ray cluster"
        self._ray = import_ray(local_only=self.address is None)
        self._started = False
        self.startup_seconds: float | None = None

    def _connect(self) -> None:
        ray = self._ray
        if ray.is_initialized():  # the caller's own session: use it, leave it running
            return
        t0 = time.perf_counter()
        try:
            if self.address is not None:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False,
                         _node_ip_address="127.0.0.1")
        except Exception as e:  # ray raises ConnectionError, RuntimeError, ValueError, ...
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray cluster"
            raise WeightzooError(f"cannot start or reach {where}: {str(e).splitlines()[0]}") from e
        self._started = True
        self.startup_seconds = time.perf_counter() - t0

    def map_unordered(self, fn: TaskFn, shared: Any, tasks: Sequence[Any],
                      costs: Sequence[int] | None = None,
                      budget: float | None = None) -> Iterator[tuple[int, Any]]:
        ray = self._ray
        self._connect()
        remote = ray.remote(num_cpus=self.threads)(_run_ray)
        shared_ref = ray.put(shared)
        pending = {remote.remote(fn, shared_ref, task, self.threads): i
                   for i, task in enumerate(tasks)}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayTaskError as e:
                        cause = getattr(e, "cause", None)
                        if isinstance(cause, Exception):  # the task's own error, as raised
                            raise cause from None
                        raise
                    yield i, result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self._started = False
            self._ray.shutdown()
