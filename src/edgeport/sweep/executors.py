"""Executors: run one function over the sweep's jobs and hand back each result as it finishes.

An executor is `executor(fn, jobs, workers) -> iterator of (job, outcome)`, where `outcome` is
`fn(job)` or the exception that escaped it (a crashed worker, say). It checks what it needs
before it starts any work, so a missing package fails the command before anything is written.

- `local`: worker processes of this machine (`spawn`, so each worker imports edgeport afresh);
  one worker runs the jobs in this process.
- `ray`: Ray tasks; on the cluster named by RAY_ADDRESS when it is set, else on a local Ray
  started for this sweep. On a cluster the source, the data and the output folder must be on a
  file system every node sees at the same path.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import TypeVar

from edgeport.errors import MissingDependencyError
from edgeport.registry import Registry

J = TypeVar("J")
Outcome = object  # fn's return value, or the BaseException it raised
Executor = Callable[[Callable[[J], object], list[J], int], Iterator[tuple[J, Outcome]]]


def run_local(fn: Callable[[J], object], jobs: list[J], workers: int) -> Iterator[tuple[J, Outcome]]:
    """`fn` over `jobs` in up to `workers` spawned processes (in this process when one is enough)."""
    if min(workers, len(jobs)) <= 1:
        return ((job, _call(fn, job)) for job in jobs)
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"))
    return _pool_results(pool, fn, jobs)


def _call(fn, job) -> Outcome:
    try:
        return fn(job)
    except Exception as exc:  # noqa: BLE001 - recorded as the job's outcome, the sweep goes on
        return exc


def _pool_results(pool: ProcessPoolExecutor, fn, jobs) -> Iterator[tuple[J, Outcome]]:
    try:
        pending = {pool.submit(fn, job): job for job in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                error = future.exception()
                yield job, error if error is not None else future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def run_ray(fn: Callable[[J], object], jobs: list[J], workers: int) -> Iterator[tuple[J, Outcome]]:
    """`fn` over `jobs` as Ray tasks, at most `workers` at a time."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "--executor ray", "ray") from None
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address="auto")
        else:
            ray.init(num_cpus=workers)
    return _ray_results(ray, ray.remote(fn), jobs, workers)


def _ray_results(ray, remote, jobs, workers) -> Iterator[tuple[J, Outcome]]:
    waiting, running = list(jobs), {}
    while waiting or running:
        while waiting and len(running) < workers:
            job = waiting.pop(0)
            running[remote.remote(job)] = job
        done, _ = ray.wait(list(running), num_returns=1)
        for ref in done:
            job = running.pop(ref)
            try:
                yield job, ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a task's error is that job's outcome
                yield job, exc


EXECUTORS: Registry[Executor] = Registry("executor")
EXECUTORS.add("local", run_local)
EXECUTORS.add("ray", run_ray)
