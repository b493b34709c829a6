"""Micro-batching: concurrent requests share one model call.

Each request puts its image on a queue and waits; one worker takes what has arrived within a few
milliseconds (up to a batch) and scores it in one call. Under load that is one graph call per batch
instead of one per request; alone, a request waits at most `max_wait_s` more.
"""

import queue
import threading
import time
from concurrent.futures import Future


class MicroBatcher:
    def __init__(self, score_batch, max_batch: int = 32, max_wait_s: float = 0.004):
        """score_batch(list of items) -> list of results, one per item, in order."""
        self.score_batch, self.max_batch, self.max_wait_s = score_batch, max_batch, max_wait_s
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._serve, name="micro-batcher", daemon=True).start()

    def __call__(self, item):
        future: Future = Future()
        self._queue.put((item, future))
        return future.result()

    def _serve(self) -> None:
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch and (left := deadline - time.monotonic()) > 0:
                try:
                    batch.append(self._queue.get(timeout=left))
                except queue.Empty:
                    break
            try:
                results = self.score_batch([item for item, _ in batch])
            except Exception as exc:  # every waiting request gets the error, the worker lives on
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results):
                future.set_result(result)
