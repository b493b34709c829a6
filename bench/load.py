"""Load test of `cxr serve` on loopback: N concurrent clients posting real X-rays for a bounded time."""

import asyncio
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from cxr.testing import CHEST_XRAY, ROOT, Server

XRAYS = CHEST_XRAY / "val"


async def _client(url, images, stop_at, latencies, errors):
    async with httpx.AsyncClient(timeout=30) as client:
        i = 0
        while time.perf_counter() < stop_at:
            name, data = images[i % len(images)]
            i += 1
            start = time.perf_counter()
            try:
                response = await client.post(url, files={"file": (name, data)})
                ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - start) * 1000)
            errors.append(0 if ok else 1)


async def _run(url, images, clients, seconds):
    latencies, errors = [], []
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(*(_client(url, images, stop_at, latencies, errors) for _ in range(clients)))
    return {"requests": len(latencies), "requests_per_s": len(latencies) / seconds, "errors": int(sum(errors)),
            "p50_ms": float(np.percentile(latencies, 50)), "p95_ms": float(np.percentile(latencies, 95))}


def load_test(run_dir: Path, client_counts=(8, 32), seconds: float = 30.0) -> dict:
    images = [(p.name, p.read_bytes()) for p in sorted(XRAYS.rglob("*.jpeg"))]
    with Server(run_dir) as server:
        asyncio.run(_run(f"{server.url}/api/predict", images, 2, 3))  # warm-up
        return {str(n): asyncio.run(_run(f"{server.url}/api/predict", images, n, seconds)) for n in client_counts}


if __name__ == "__main__":
    import json

    print(json.dumps(load_test(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs" / "demo" / "cnn"), indent=2))
