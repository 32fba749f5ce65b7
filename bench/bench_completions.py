"""Throughput of the completions backend against the local stub server, with and without batching
(figures printed, not a test).

    python bench/bench_completions.py
    python bench/bench_completions.py --prompts 512 --batch-size 32 --latency-ms 0 20 50

For each simulated server latency (the stub sleeps that long per request, whatever the number of
prompts in it: a server that batches on its side) and each concurrency, the same distinct
prompts are sent one per request and ``--batch-size`` per request, each with a fresh in-memory
cache; prompts/s of both and their ratio are printed. Latency 0 measures the client and HTTP
overhead alone (the stub answers at once). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common.completions import CompletionsBackend  # noqa: E402
from common.generation_cache import GenerationCache  # noqa: E402
from tests.openai_stub_server import StubServer  # noqa: E402

REFERENCE = "def f(numbers):\n    return sorted(set(numbers))\n"


def prompts_for(n: int) -> list[str]:
    # HumanEval-like prompts of ~40 words, all distinct so that none is answered from the cache
    return [f'def task_{i}(numbers: list[int]) -> list[int]:\n    """Return the sorted unique elements '
            f'of the list, keeping the first occurrence of each value, for input number {i}. '
            f'Examples are given below and the function must not modify its argument."""\n'
            for i in range(n)]


def measure(server: StubServer, prompts: list[str], concurrency: int, batch_size: int | None) -> float:
    """Prompts per second for one pass over ``prompts`` (``batch_size=None``: one per request)."""
    be = CompletionsBackend("bench-model", base_url=server.base_url, api_key="bench",
                            cache=GenerationCache(None), concurrency=concurrency,
                            batch_size=batch_size or 1, batching=batch_size is not None)
    before = len(server.requests)
    start = time.perf_counter()
    out = be.generate(prompts, REFERENCE)
    seconds = time.perf_counter() - start
    expected = -(-len(prompts) // batch_size) if batch_size else len(prompts)
    if len(out) != len(prompts) or len(server.requests) - before != expected:
        raise SystemExit(f"bench: {len(server.requests) - before} requests, expected {expected}")
    return len(prompts) / seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 20.0])
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    a = p.parse_args(argv)
    if a.prompts < 1 or a.batch_size < 1 or min(a.concurrency) < 1 or min(a.latency_ms) < 0:
        p.error("--prompts, --batch-size and --concurrency must be positive, --latency-ms >= 0")
    prompts = prompts_for(a.prompts)
    print(f"{a.prompts} distinct prompts, batch size {a.batch_size}; prompts/s (higher is better)")
    print(f"{'latency ms':>10} {'concurrency':>11} {'one per request':>16} {'batched':>9} {'ratio':>7}")
    for latency in a.latency_ms:
        for concurrency in a.concurrency:
            with StubServer(max_requests=10 ** 6, lifetime_s=3600) as server:
                server.delay_s = latency / 1000
                measure(server, prompts[:8], concurrency, None)  # warm the client and server up
                single = measure(server, prompts, concurrency, None)
                batched = measure(server, prompts, concurrency, a.batch_size)
            ratio = batched / single
            print(f"{latency:>10g} {concurrency:>11} {single:>16.1f} {batched:>9.1f} {ratio:>6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
