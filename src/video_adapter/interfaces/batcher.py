"""Concurrent eps requests served in shared forwards: `Batcher` collects requests for at most a few milliseconds, up
to --max-batch rows, and runs them as one batch on one compute thread.

A forward of B rows costs far less than B forwards of one row on a GPU (and somewhat less on a CPU): each call's
fixed costs (kernel launches, Python, weight reads) are paid once. It waits only while more requests are on their
way (`active` counts the requests the server is reading or answering), so a lone client pays no waiting time.
Requests of different conditions (say, with and without a first frame) go in separate forwards of one round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..models.wire import EpsRequest


@dataclass
class Job:
    request: EpsRequest
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """`await submit(request)` -> eps [rows, ...]. `compute(requests)` runs one forward for requests of one
    signature and returns their eps in order; it runs on a single thread, so the model and its text cache are never
    used by two threads at once. An exception in `compute` fails that forward's requests only."""

    def __init__(self, compute: Callable[[list[EpsRequest]], list[Tensor]], max_rows: int, wait_ms: float):
        if max_rows < 1 or wait_ms < 0:
            raise ValueError(f"--max-batch must be at least 1 and --batch-wait-ms at least 0, got {max_rows}, "
                             f"{wait_ms}")
        self.compute, self.max_rows, self.wait = compute, max_rows, wait_ms / 1000
        self.queue: asyncio.Queue[Job] | None = None
        # one compute thread, with the CPU thread count of the thread that made the batcher: eps is then the same
        # whichever request asks (a thread count changes float sums) and equals a local forward in that process
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="eps", initializer=torch.set_num_threads,
                                           initargs=(torch.get_num_threads(),))
        self.active = 0          # requests between their authorisation and their answer
        self.forwards = 0        # forwards run, and the requests and rows they held (for the load test's report)
        self.requests = 0
        self.rows = 0
        self._carry: Job | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, request: EpsRequest) -> Tensor:
        job = Job(request, asyncio.get_running_loop().create_future())
        await self.queue.put(job)
        return await job.future

    async def _next(self, timeout: float | None) -> Job | None:
        if self._carry is not None:
            job, self._carry = self._carry, None
            return job
        if timeout is None:
            return await self.queue.get()
        try:
            return self.queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self.queue.get(), timeout)
        except (asyncio.QueueEmpty, asyncio.TimeoutError):
            return None

    async def _collect(self) -> list[Job]:
        """The next round: the first waiting job, then every job already queued, then (while other requests are on
        their way) those arriving within the wait, up to max_rows rows; a job that would overflow waits for the next
        round."""
        jobs = [await self._next(None)]
        rows, deadline = jobs[0].request.rows, time.perf_counter() + self.wait
        while rows < self.max_rows:
            more_coming = self.active > len(jobs)
            job = await self._next(deadline - time.perf_counter() if more_coming else 0)
            if job is None:
                break
            if rows + job.request.rows > self.max_rows:
                self._carry = job
                break
            jobs.append(job)
            rows += job.request.rows
        return [job for job in jobs if not job.future.done()]  # a timed-out request is not computed

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._collect()
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                groups.setdefault(job.request.signature, []).append(job)
            for group in groups.values():
                try:
                    results = await loop.run_in_executor(self.executor, self.compute, [j.request for j in group])
                except Exception as e:  # noqa: BLE001 -- the requests get the error; the server keeps serving
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(e)
                    continue
                self.forwards += 1
                self.requests += len(group)
                self.rows += sum(j.request.rows for j in group)
                for job, eps in zip(group, results):
                    if not job.future.done():
                        job.future.set_result(eps)
