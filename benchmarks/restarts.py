"""Restarts of a fedavg-mode attack: vmap vs lax.map, dense vs factored, scan vs unrolled
(issue 28), side by side in one process.

    python -m benchmarks.restarts [--groups=ig,dlf,cap,saving] [--rounds=3] [--out=FILE.json]
        [--cap_steps=5,16,32] [--saving_epochs=1,2,3,4]

Per group (IG fedavg: the cnn, 10 dummies, 5 local steps of batch 10; DLF: cnn3, 50 images,
5 steps; cap: the dense IG simulation at `CAP_STEPS` local steps, scanned and unrolled;
saving: DLF cnn3 at `SAVING_EPOCHS` epochs, dense unrolled and factored) every
variant's attack step of N restarts (N = 1 and 8) is compiled ahead of time
(compile seconds, ``memory_analysis`` temp bytes), then all are called in turn ``--rounds``
times after one warm-up each, so a shared machine's load falls on all alike (min and median
ms per call). A variant is (case, N, ``vmap_chunk``: 0 all vmapped, 1 a ``lax.map``, k a map
of k vmapped, simulation): 'before' is ``attack.factored='off'`` (`Client.delta`, its steps a
``lax.scan``: the code before issue 28), 'unrolled' the dense simulation with its steps
unrolled, 'after' the case as configured now. ``flops`` / ``bytes`` per call come from XLA's
``cost_analysis`` of an all-vmapped copy whose local steps are unrolled (XLA counts a loop
body once); ``flop_frac`` / ``byte_frac`` are the achieved rates over the measured peaks
(`benchmarks.run.roofline`: a 2048^2 f32 matmul, a 256 MiB in-place add).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import statistics
import time

import jax

from benchmarks.allocator import tune_host_allocator
from benchmarks.factored_pair import _loadavg
from benchmarks.run import _analysis, _aot, _case_attack, attack_cases, log, roofline
from leakjax.attacks.runner import chunked_map
from leakjax.fl.client import unrolled_local_steps

# (case, N, vmap_chunk, simulation); simulation: 'before' (factored='off'), 'unrolled' (dense,
# steps unrolled by force), 'after' (as configured)
GROUPS = {
    "ig": [
        ("ig_fedavg_dense", 1, 1, "before"),
        ("ig_fedavg_dense", 1, 1, "unrolled"),
        ("ig_fedavg", 1, 1, "after"),
        ("ig_fedavg_dense", 8, 1, "before"),
        ("ig_fedavg_dense", 8, 1, "unrolled"),
        ("ig_fedavg_dense", 8, 0, "before"),
        ("ig_fedavg", 8, 0, "after"),
        ("ig_fedavg", 8, 1, "after"),
        ("ig_fedavg", 8, 2, "after"),
        ("ig_fedavg", 8, 4, "after"),
    ],
    "dlf": [
        ("dlf_cnn3", 1, 1, "before"),
        ("dlf_cnn3", 1, 1, "after"),
        ("dlf_cnn3_factored", 1, 1, "after"),
        ("dlf_cnn3", 8, 1, "before"),
        ("dlf_cnn3", 8, 0, "after"),
        ("dlf_cnn3", 8, 1, "after"),
        ("dlf_cnn3", 8, 2, "after"),
        ("dlf_cnn3", 8, 4, "after"),
        ("dlf_cnn3_factored", 8, 0, "after"),
        ("dlf_cnn3_factored", 8, 1, "after"),
    ],
}


# the cap on unrolled steps (`fl.factored.unrolls`): ig_fedavg dense at T local steps (T epochs
# of one batch of 10), N = 1, scan vs unrolled
CAP_STEPS = (5, 16, 32)
# 'saving': where factoring stops paying. dlf_cnn3 (fc1 8192 x 200) at E epochs of 5 batches
# of 10: rows = 50 E, so `fl.factored.worth_factoring`'s saving fin*fout / (rows (fin + fout))
# is 3.9 / 1.95 / 1.3 / 0.98 at E = 1 / 2 / 3 / 4; dense unrolled against factored ('on')
SAVING_EPOCHS = (1, 2, 3, 4)


def _cases(name: str, cap_steps=CAP_STEPS, saving_epochs=SAVING_EPOCHS) -> list[tuple]:
    """(AttackCase, N, vmap_chunk, simulation) of a group."""
    cases = {c.name: c for c in attack_cases(False)}
    out = []
    if name == "cap":
        base = cases["ig_fedavg_dense"]
        for t in cap_steps:
            case = dataclasses.replace(base, name=f"ig_fedavg_dense_T{t}", epochs=t)
            out += [(case, 1, 1, "before"), (case, 1, 1, "unrolled")]
        return out
    if name == "saving":
        base = cases["dlf_cnn3"]
        for e in saving_epochs:
            dense = dataclasses.replace(base, name=f"dlf_cnn3_E{e}", epochs=e)
            on = dataclasses.replace(
                dense, name=f"dlf_cnn3_E{e}_factored", overrides=(("factored", "on"),)
            )
            out += [(dense, 1, 1, "unrolled"), (on, 1, 1, "after")]
        return out
    return [(cases[c], n, chunk, sim) for c, n, chunk, sim in GROUPS[name]]


def _program(case, n: int, vmap_chunk: int, sim: str, unroll: bool = False):
    """(jittable f, args) of ``case``'s attack step of ``n`` restarts."""
    if sim == "before":
        case = dataclasses.replace(case, overrides=(*case.overrides, ("factored", "off")))
    _, atk, _ = _case_attack(case)
    states = jax.jit(jax.vmap(atk.init))(jax.random.split(jax.random.key(3), n))

    def f(states, key):
        return chunked_map(atk.step, vmap_chunk)(states, jax.random.split(key, n))

    return f, (states, jax.random.key(4))


def _compile(case, n, vmap_chunk, sim, unroll):
    f, args = _program(case, n, vmap_chunk, sim)
    with unrolled_local_steps() if unroll else contextlib.nullcontext():
        compiled, seconds = _aot(f, *args)
    return compiled, args, seconds


def run_group(name: str, rounds: int, peaks: dict, **sizes) -> list[dict]:
    variants, costs = [], {}
    for case, n, chunk, sim in _cases(name, **sizes):
        cname = case.name
        compiled, args, compile_s = _compile(case, n, chunk, sim, sim == "unrolled")
        off = sim == "before" or ("factored", "off") in case.overrides
        key = (cname, n, off)
        if key not in costs:  # an all-vmapped copy, steps unrolled: every flop counted
            cost_prog, _, _ = _compile(case, n, 0, sim, True)
            costs[key] = _analysis(cost_prog)
        mem = _analysis(compiled)
        variants.append(
            {
                "case": cname,
                "n": n,
                "vmap_chunk": chunk,
                "simulation": sim,
                "compile_s": compile_s,
                "temp_bytes": mem["temp_bytes"],
                "flops": costs[key]["flops"],
                "bytes_accessed": costs[key]["bytes_accessed"],
                "_run": (compiled, args),
            }
        )
        log(f"{name}: compiled {cname} N={n} chunk={chunk} {sim}: {compile_s:.1f} s")
    for v in variants:  # warm-up
        jax.block_until_ready(v["_run"][0](*v["_run"][1]))
    load_before, times = _loadavg(), [[] for _ in variants]
    for _ in range(rounds):
        for v, t in zip(variants, times, strict=True):
            compiled, args = v["_run"]
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            t.append(time.perf_counter() - t0)
    load_after = _loadavg()
    rows = []
    for v, t in zip(variants, times, strict=True):
        row = {k: val for k, val in v.items() if not k.startswith("_")}
        best = min(t)
        row.update(
            min_ms=1e3 * best,
            median_ms=1e3 * statistics.median(t),
            per_restart_ms=1e3 * best / v["n"],
            flop_frac=row["flops"] / best / peaks["peak_flops_s"],
            byte_frac=row["bytes_accessed"] / best / peaks["peak_bytes_s"],
            load=f"{load_before} -> {load_after}",
        )
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    head = (
        "| case | N | vmap_chunk | simulation | ms/call min (median) | ms/restart | "
        "compile s | temp MiB | GFLOP/call | GB/call | flop frac | byte frac |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['n']} | {r['vmap_chunk']} | {r['simulation']} | "
            f"{r['min_ms']:.0f} ({r['median_ms']:.0f}) | {r['per_restart_ms']:.0f} | "
            f"{r['compile_s']:.1f} | {r['temp_bytes'] / 2**20:.0f} | {r['flops'] / 1e9:.2f} | "
            f"{r['bytes_accessed'] / 1e9:.2f} | {r['flop_frac']:.3f} | {r['byte_frac']:.3f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--groups", default="ig,dlf")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="")
    ap.add_argument("--cap_steps", default=",".join(map(str, CAP_STEPS)), help="group cap")
    ap.add_argument(
        "--saving_epochs", default=",".join(map(str, SAVING_EPOCHS)), help="group saving"
    )
    args = ap.parse_args(argv)
    ints = lambda v: tuple(int(x) for x in v.split(",") if x)  # noqa: E731
    sizes = dict(cap_steps=ints(args.cap_steps), saving_epochs=ints(args.saving_epochs))
    tune_host_allocator()
    peaks = roofline()
    log(f"peaks: {peaks['peak_flops_s'] / 1e9:.1f} GFLOP/s, {peaks['peak_bytes_s'] / 1e9:.1f} GB/s")
    rows = []
    for g in args.groups.split(","):
        rows += run_group(g, args.rounds, peaks, **sizes)
        print(markdown(rows), flush=True)
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"peaks": peaks, "rows": rows}, f, indent=1)
    return rows


if __name__ == "__main__":
    main()
