"""Dense vs factored simulated client, side by side in one process (issue 28).

    python -m benchmarks.factored_pair [--pairs=ig_fedavg_dense:ig_fedavg,...] [--rounds=7]

Each pair is two `benchmarks.run` cases (the first dense, ``attack.factored='off'``; the
second factored): both attack steps (N = 1, restarts as `attacks.run` runs them) are compiled
ahead of time, then called alternately ``--rounds`` times after one warm-up each, so a
shared machine's load falls on both alike. Prints ms per iteration (min and median), their
ratio, whether the two new states agree, the compile times and the load average before and
after (``/proc/loadavg``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

from benchmarks.allocator import tune_host_allocator
from benchmarks.run import _aot, _case_attack, attack_cases, log
from leakjax.attacks.runner import chunked_map, resolve_vmap_chunk

PAIRS = "ig_fedavg_dense:ig_fedavg,dlf_cnn3:dlf_cnn3_factored"


def _step(case):
    """(compiled N = 1 attack step, its args, compile seconds)."""
    spec, atk, acfg = _case_attack(case)
    chunk = resolve_vmap_chunk(-1, case.mode, spec.sequential(acfg))
    states = jax.jit(jax.vmap(atk.init))(jax.random.split(jax.random.key(3), 1))

    def f(states, key):
        return chunked_map(atk.step, chunk)(states, jax.random.split(key, 1))

    args = (states, jax.random.key(4))
    compiled, compile_s = _aot(f, *args)
    return compiled, args, compile_s


def _loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def run_pair(dense_name: str, fact_name: str, rounds: int) -> dict:
    cases = {c.name: c for c in attack_cases(False)}
    steps = {n: _step(cases[n]) for n in (dense_name, fact_name)}
    outs = {n: jax.block_until_ready(c(*a)) for n, (c, a, _) in steps.items()}  # warm-up
    times = {n: [] for n in steps}
    load_before = _loadavg()
    for _ in range(rounds):
        for n, (c, a, _) in steps.items():
            t0 = time.perf_counter()
            jax.block_until_ready(c(*a))
            times[n].append(time.perf_counter() - t0)
    x_dense, x_fact = (np.asarray(outs[n][0].x, np.float64) for n in (dense_name, fact_name))
    row = {
        "pair": f"{dense_name} vs {fact_name}",
        "load_before": load_before,
        "load_after": _loadavg(),
        "state_x_relerr": float(np.linalg.norm(x_fact - x_dense) / np.linalg.norm(x_dense)),
    }
    for n, label in ((dense_name, "dense"), (fact_name, "factored")):
        row[f"{label}_min_ms"] = 1e3 * min(times[n])
        row[f"{label}_median_ms"] = 1e3 * statistics.median(times[n])
        row[f"{label}_compile_s"] = steps[n][2]
    row["ratio_min"] = row["dense_min_ms"] / row["factored_min_ms"]
    row["ratio_median"] = row["dense_median_ms"] / row["factored_median_ms"]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", default=PAIRS, help="dense:factored case names, comma-separated")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    tune_host_allocator()
    rows = []
    for pair in args.pairs.split(","):
        dense_name, fact_name = pair.split(":")
        row = run_pair(dense_name, fact_name, args.rounds)
        log(
            f"{row['pair']}: dense {row['dense_min_ms']:.1f} ms (median "
            f"{row['dense_median_ms']:.1f}), factored {row['factored_min_ms']:.1f} ms (median "
            f"{row['factored_median_ms']:.1f}): {row['ratio_min']:.2f}x (median "
            f"{row['ratio_median']:.2f}x); compile {row['dense_compile_s']:.1f} / "
            f"{row['factored_compile_s']:.1f} s; state x rel. diff {row['state_x_relerr']:.1e}; "
            f"load {row['load_before']} -> {row['load_after']}"
        )
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
