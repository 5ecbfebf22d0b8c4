"""Approximate search over a big catalogue (`./dev bench ann [--items N]`): queries/s and
recall@10 of the HNSW index (models.ann, faiss) against exact brute force (implicit's compiled
top-k over the same factors) in the same run, at several search widths; and brute force against
the index at smaller catalogues, where the switch point lies."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
from implicit.cpu.topk import topk

from models.ann import ItemIndex

FACTORS = 64
QUERIES = 2_000
K = 10


def _factors(items: int, seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """ALS-shaped factors: random directions with uneven norms (popular items are longer)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((items, FACTORS)) * rng.gamma(2.0, 0.5, (items, 1))
    queries = rng.standard_normal((QUERIES, FACTORS))
    return vectors.astype(np.float32), queries.astype(np.float32)


def _recall(found: npt.NDArray[np.int64], truth: npt.NDArray[np.int32]) -> float:
    return float(
        np.mean(
            [len(set(a) & set(b)) / K for a, b in zip(found.tolist(), truth.tolist(), strict=True)]
        )
    )


def run(items: int = 1_000_000) -> None:
    print(
        f"\n== approximate search: {items:,} items x {FACTORS} factors, {QUERIES:,} queries, top "
        f"{K} ==",
        flush=True,
    )
    vectors, queries = _factors(items, 7)
    started = time.perf_counter()
    truth, _ = topk(vectors, queries, K, num_threads=0)
    brute = QUERIES / (time.perf_counter() - started)
    print(f"brute force (implicit topk, every core): {brute:,.0f} queries/s", flush=True)
    started = time.perf_counter()
    index = ItemIndex.build(vectors)
    print(
        f"HNSW build: {time.perf_counter() - started:.0f} s, "
        f"{index.to_array().nbytes / 2**20:,.0f} MiB stored",
        flush=True,
    )
    best = None
    for ef in (32, 64, 128, 256):
        index.ef_search = ef
        started = time.perf_counter()
        found, _ = index.search(queries, K)
        rate = QUERIES / (time.perf_counter() - started)
        recall = _recall(found, truth)
        if recall >= 0.95 and best is None:
            best = (ef, rate, recall)
        print(
            f"HNSW efSearch {ef:>3}: {rate:,.0f} queries/s = {rate / brute:,.1f}x brute force, "
            f"recall@10 {recall:.3f}",
            flush=True,
        )
    for small in (20_000, 100_000):
        v, q = _factors(small, 8)
        started = time.perf_counter()
        topk(v, q, K, num_threads=0)
        exact = QUERIES / (time.perf_counter() - started)
        idx = ItemIndex.build(v)
        started = time.perf_counter()
        idx.search(q, K)
        approx = QUERIES / (time.perf_counter() - started)
        print(
            f"{small:,} items: brute force {exact:,.0f} queries/s, HNSW (efSearch {idx.ef_search}) "
            f"{approx:,.0f}",
            flush=True,
        )
    if best:
        print(
            f"at recall@10 >= 0.95 (efSearch {best[0]}): {best[1]:,.0f} queries/s = "
            f"{best[1] / brute:,.0f}x brute force (target 10x)"
        )
