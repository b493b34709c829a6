"""Micro-batching in the service: concurrent requests share model calls, each gets its own answer."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from cxr.serve.batching import MicroBatcher


def test_concurrent_requests_share_calls_and_get_their_own_results():
    calls, lock = [], threading.Lock()
    release = threading.Event()

    def square_all(items):
        release.wait(5)  # the first call waits, so the other requests queue up behind it
        with lock:
            calls.append(len(items))
        return [i * i for i in items]

    batcher = MicroBatcher(square_all, max_batch=8, max_wait_s=0.05)
    with ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(batcher, i) for i in range(24)]
        release.set()
        assert [f.result(timeout=10) for f in futures] == [i * i for i in range(24)]
    assert sum(calls) == 24 and len(calls) < 24 and max(calls) <= 8


def test_a_failing_batch_fails_its_requests_and_the_batcher_lives_on():
    def fragile(items):
        if "bad" in items:
            raise ValueError("cannot score")
        return [len(i) for i in items]

    batcher = MicroBatcher(fragile, max_wait_s=0.001)
    with pytest.raises(ValueError, match="cannot score"):
        batcher("bad")
    assert batcher("good") == 4
