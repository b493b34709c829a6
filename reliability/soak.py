"""The service under load: many concurrent clients for a minute or more, good and bad uploads mixed.

Passes with zero 5xx answers, the server alive, and memory that levels off (the second half of the run
may not grow the resident memory by more than a quarter of what the first half ended at).
"""

import random
import threading
import time
from pathlib import Path

from common import FULLRES, Server, wire_name

MIX = (("xray", 0.65), ("explain", 0.10), ("bad", 0.15), ("oversized", 0.10))
MAX_UPLOAD_MB = 2


def check(run: Path, bad_files: list[Path], env, clients: int = 32, seconds: float = 60.0) -> dict:
    import httpx
    import psutil

    xrays = [p.read_bytes() for p in sorted(FULLRES.rglob("*.jpeg"))]
    bad = [(wire_name(p), p.read_bytes()) for p in bad_files]
    oversized = random.Random(0).randbytes(MAX_UPLOAD_MB * 2**20 + 1024)
    server = Server(run, "--max-upload-mb", MAX_UPLOAD_MB, env=env)
    process = psutil.Process(server.process.pid)
    with httpx.Client(base_url=server.url, timeout=60) as warm:  # load the model and the explainer first
        warm.post("/api/predict?explain=true", files={"file": ("x.jpeg", xrays[0])})
    rss_start = process.memory_info().rss
    results, lock, rss_samples = [], threading.Lock(), []
    stop_at = time.time() + seconds

    def client(seed: int):
        rnd = random.Random(seed)
        with httpx.Client(base_url=server.url, timeout=120) as http:
            while time.time() < stop_at:
                kind = rnd.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
                name, data = {"xray": ("x.jpeg", rnd.choice(xrays)), "explain": ("x.jpeg", rnd.choice(xrays)),
                              "bad": rnd.choice(bad), "oversized": ("big.jpeg", oversized)}[kind]
                url = "/api/predict" + ("?explain=true" if kind == "explain" else "")
                started = time.perf_counter()
                try:
                    status = http.post(url, files={"file": (name, data)}).status_code
                except httpx.HTTPError as exc:
                    status = f"no answer: {type(exc).__name__}"
                with lock:
                    results.append((kind, status, time.perf_counter() - started))

    def sample_memory():
        while time.time() < stop_at:
            rss_samples.append((time.time(), process.memory_info().rss))
            time.sleep(1)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    threads.append(threading.Thread(target=sample_memory))
    started = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - started
    rss_end = process.memory_info().rss
    alive = server.alive()
    server.stop()

    latencies = sorted(seconds for _, _, seconds in results)
    failures = [r for r in results if not isinstance(r[1], int) or r[1] >= 500]
    half = [rss for t, rss in rss_samples if t >= started + seconds / 2]
    first_half_end = max([rss for t, rss in rss_samples if t < started + seconds / 2] or [rss_start])
    growth_ok = (max(half or [rss_end]) - first_half_end) <= 0.25 * first_half_end
    by_kind = {}
    for kind, status, _ in results:
        by_kind.setdefault(kind, {}).setdefault(str(status), 0)
        by_kind[kind][str(status)] += 1
    mb = 2**20
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": len(results),
        "errors_5xx": len(failures),
        "p95_ms": round(1000 * latencies[int(0.95 * (len(latencies) - 1))], 1) if latencies else None,
        "rss_start_mb": round(rss_start / mb, 1), "rss_end_mb": round(rss_end / mb, 1),
        "rss_peak_mb": round(max([rss for _, rss in rss_samples] + [rss_end]) / mb, 1),
        "statuses": by_kind, "server_alive": alive,
        "passed": not failures and alive and growth_ok and len(results) > 0,
    }
