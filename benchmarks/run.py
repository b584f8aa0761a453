"""The benchmark suite: every registered attack, FedAvg rounds, memory vs local steps.

    python -m benchmarks.run --suite=cpu|gpu --out=FILE.json [--only=NAME,...] [--quick]
                             [--repeats=3] [--list] [--precision=f32,tf32,bf16] [--ns=1,64]
                             [--fedavg_grid=suite|check]

For every attack in `leakjax.attacks.names()` (one or two settings each, the reference's where
REFERENCE.md §6 has a figure) and N batched restarts (N = 1 and 8; 64 too on the gpu suite):

- ``compile_s``: ``jax.jit(f).lower(...).compile()`` wall time (ahead of time, so the timed
  calls never include tracing or compiling);
- ``iter_s``: one call of the compiled step of all N restarts (min over ``--repeats`` calls
  after one warm-up call); one CMA-ES generation for ggl; the closed form (``init``) for rtf.
  The timed program returns the whole new state: returning only the loss let XLA drop the
  gradient (the rows in BUILD_NOTES before session 6 timed the objective alone). Restarts
  run as `attacks.run` runs them by default (``vmap_chunk``: one after another for fedavg
  mode and DLG/iDLG on CPU; then an all-vmapped row follows for comparison);
- ``throughput``: restart-iterations per second (N / iter_s);
- ``peak_bytes``: XLA's ``memory_analysis()`` of the compiled step (temp + arguments +
  outputs - aliased); ``rss_max_bytes``: the process's resident-set high-water mark so far
  (``getrusage``; monotone over the run, so only an upper bound for the row);
- ``flops``, ``bytes_accessed``: XLA's ``cost_analysis()``. XLA counts a loop body once, not
  once per trip (checked: a 10-step scan of matmuls reports one matmul's flops), so rows whose
  step contains a loop (fedavg-mode simulations, FedAvg rounds) undercount; they say
  ``cost_counts_loop_once``. ``bound_s`` = max(flops / peak flop rate, bytes / peak bandwidth)
  with the peaks measured at the start (``roofline`` row: a 2048^2 matmul and a 256 MiB
  in-place streaming add); ``bound_frac`` = bound_s / iter_s (1 = at the roofline; small =
  overhead, latency or a poor kernel); ``bound`` says which of the two terms is larger.

FedAvg: one round of the cnn on CIFAR-shaped random uint8 data, 10 and 100 clients x batch
10 and 50 x 1 and 5 local epochs, clients vmapped 10 at a time and scanned. The gpu suite
uses 500 images per client (the reference's); the cpu suite uses 50 and leaves out 100
clients x 5 epochs (so that it finishes in about 20 minutes on 2 cores). Both add the
reference's own setting (10 x 500, batch 50, 2 epochs; 33.7 s), with 10 clients vmapped and
with one client at a time (``fl.client_chunk=1``): the ``fedavg_reference`` rows.
``reference_s`` of the other batch-50 rows is the reference's figure scaled linearly in
images x epochs (3.37 ms per image-epoch), an estimate.

Memory: `benchmarks.memory` (IG fedavg-mode and DLF step vs unrolled local steps, remat off /
per-step / two-level).

``--torch=FILE.json`` (from ``benchmarks/torch_reference.py`` on the same machine) adds the
same-machine torch time and the ratio to it (``torch_here_s``, ``speedup_vs_torch_here``).

``--precision`` runs every entry under each listed `leakjax.precision` policy (rows carry
``precision``; default f32 only); ``--ns`` replaces the suite's restart counts;
``--fedavg_grid=check`` keeps two whole rounds (100 clients x 1 epoch, and the reference's
10 x 2 epochs): ``benchmarks/gpu_check.sh`` uses all three.

``--quick`` runs tiny shapes (for tests/test_benchmarks.py). A markdown table is printed at
the end; progress lines while it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.allocator import tune_host_allocator
from leakjax import attacks, models, precision
from leakjax.attacks.runner import chunked_map, resolve_vmap_chunk
from leakjax.config import base_config
from leakjax.fl import ClientHParams, FLSettings
from leakjax.fl.client import unrolled_local_steps
from leakjax.fl.observation import fedavg_observation, gradient_observation
from leakjax.fl.server import make_train_round, resolve_client_chunk

BOX = (jnp.full(3, -1.0), jnp.full(3, 1.0))
REF_FEDAVG_PER_IMAGE_EPOCH = 33.7 / (10 * 500 * 2)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _rss() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _analysis(compiled) -> dict:
    out = {"peak_bytes": None, "temp_bytes": None, "flops": None, "bytes_accessed": None}
    try:
        m = compiled.memory_analysis()
        if m is not None:
            out["temp_bytes"] = int(m.temp_size_in_bytes)
            out["peak_bytes"] = int(
                m.temp_size_in_bytes
                + m.argument_size_in_bytes
                + m.output_size_in_bytes
                - m.alias_size_in_bytes
            )
    except Exception:  # noqa: BLE001 - not every backend implements it
        pass
    try:
        c = compiled.cost_analysis()
        c = c[0] if isinstance(c, list) else c
        if c:
            out["flops"] = float(c.get("flops", float("nan")))
            out["bytes_accessed"] = float(c.get("bytes accessed", float("nan")))
    except Exception:  # noqa: BLE001
        pass
    return out


def _aot(f, *args):
    """Lower and compile ``f`` ahead of time; returns (compiled, seconds)."""
    t0 = time.perf_counter()
    compiled = jax.jit(f).lower(*args).compile()
    return compiled, time.perf_counter() - t0


def _time(compiled, args, repeats: int, warmup: bool = True) -> float:
    if warmup:
        jax.block_until_ready(compiled(*args))
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        best = min(best, time.perf_counter() - t0)
    return best


# ----------------------------------------------------------------------------- roofline


def roofline(quick: bool = False) -> dict:
    """Measured peak matmul flop rate and streaming bandwidth of the default device."""
    n = 256 if quick else 2048
    a = jax.random.normal(jax.random.key(0), (n, n))
    mm, _ = _aot(lambda a: a @ a, a)
    t_mm = _time(mm, (a,), 3)
    size = (1 << 20) if quick else (64 << 20)  # float32 elements: 4 or 256 MiB
    # in place (donated): a fresh 256 MiB output per call would measure the host's page
    # faults (1.8-3.6 GB/s on the 2-core CPU) instead of the memory (12-22 GB/s)
    add = jax.jit(lambda x: x + 1.0, donate_argnums=0)
    x = add(jnp.zeros((size,), jnp.float32))
    t_add = math.inf
    for _ in range(4):
        t0 = time.perf_counter()
        x = jax.block_until_ready(add(x))
        t_add = min(t_add, time.perf_counter() - t0)
    return {"peak_flops_s": 2 * n**3 / t_mm, "peak_bytes_s": 2 * 4 * size / t_add}


# ----------------------------------------------------------------------------- attacks


@dataclasses.dataclass(frozen=True)
class AttackCase:
    """One attack setting.

    ``images``: the client's batch; ``mode``/``epochs``/``batch``: what the observation is;
    ``overrides``: ``attack.*`` config keys; ``reference_s``: REFERENCE.md §6's figure for
    this setting (per iteration, N = 1) or None.
    """

    name: str
    attack: str
    model: str
    shape: tuple[int, int, int]
    images: int
    mode: str = "gradient"
    epochs: int = 1
    batch: int = 10
    overrides: tuple = ()
    reference_s: float | None = None
    reference_what: str = ""
    imprint_bins: int = 0
    oracle_labels: bool = True
    model_kwargs: tuple = ()

    @property
    def setting(self) -> str:
        h, w, c = self.shape
        s = f"{self.model} {h}x{w}x{c}, {self.images} image(s), {self.mode}"
        if self.mode == "fedavg":
            steps = self.epochs * math.ceil(self.images / self.batch)
            s += f" ({steps} local steps of batch {min(self.batch, self.images)})"
        if self.overrides:
            s += ", " + ", ".join(f"{k}={v}" for k, v in self.overrides)
        return s


C = (32, 32, 3)


def attack_cases(quick: bool) -> list[AttackCase]:
    if quick:  # tiny shapes: no reference figure applies
        t = (8, 8, 3)
        return [
            AttackCase("ig", "ig", "cnn", t, 1),
            AttackCase("dlg", "dlg", "cnn", t, 1),
            AttackCase("ig_fedavg", "ig", "cnn", t, 2, mode="fedavg", epochs=2, batch=1),
            AttackCase("cpa", "cpa", "fc2", t, 4),
            AttackCase("rtf", "rtf", "cnn", t, 2, imprint_bins=8),
        ]
    return [
        AttackCase("dlg", "dlg", "cnn", C, 1),  # one L-BFGS iteration: line search included
        AttackCase(
            "dlg_eval",
            "dlg",
            "cnn",
            C,
            1,
            overrides=(("linesearch", "none"),),
            reference_s=0.180,
            reference_what="one objective+gradient (our step: one L-BFGS update, no line search)",
        ),
        AttackCase("idlg", "idlg", "cnn", C, 1, oracle_labels=False),
        AttackCase("ig", "ig", "cnn", C, 1, reference_s=0.209),
        AttackCase(
            "ig_fedavg",
            "ig",
            "cnn",
            C,
            10,
            mode="fedavg",
            epochs=5,
            batch=10,
            reference_s=1.32,
        ),
        # the simulated client dense (attack.factored='off'); ig_fedavg factors the cnn's fc1
        # through the local steps under the default 'auto'
        AttackCase(
            "ig_fedavg_dense",
            "ig",
            "cnn",
            C,
            10,
            mode="fedavg",
            epochs=5,
            batch=10,
            overrides=(("factored", "off"),),
            reference_s=1.32,
        ),
        AttackCase(
            "dlf_cnn3",
            "dlf",
            "cnn3",
            C,
            50,
            mode="fedavg",
            epochs=1,
            batch=10,
            reference_s=0.392,
        ),
        # cnn3's fc1 (8192 x 200 against 50 rows): factored under 'auto' since session 14
        # (SIMULATION_MIN_SAVING 1.3; it was just under the old 4), and forced on here
        AttackCase(
            "dlf_cnn3_factored",
            "dlf",
            "cnn3",
            C,
            50,
            mode="fedavg",
            epochs=1,
            batch=10,
            overrides=(("factored", "on"),),
            reference_s=0.392,
        ),
        AttackCase(
            "dlf_cnn", "dlf", "cnn", C, 50, mode="fedavg", epochs=1, batch=10, reference_s=1.68
        ),
        AttackCase("grnn", "grnn", "cnn", C, 4, reference_s=0.418),
        AttackCase("cpa", "cpa", "fc2", C, 10, reference_s=0.0022),
        AttackCase("cpa_fi", "cpa_fi", "cnn", C, 10, overrides=(("cpa_steps", 20),)),
        AttackCase("ggl", "ggl", "cnn", C, 1),
        AttackCase("rtf", "rtf", "cnn", C, 10, imprint_bins=100),
    ]


def _case_attack(case: AttackCase):
    model = models.get(case.model, 10, case.shape, **dict(case.model_kwargs))
    if case.imprint_bins:
        from leakjax.models import imprint

        model = imprint.wrap(model, bins=case.imprint_bins)
    v = model.init(jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (case.images,) + case.shape, minval=-1, maxval=1)
    y = jax.random.randint(jax.random.key(2), (case.images,), 0, 10)
    if case.mode == "gradient":
        obs = gradient_observation(model, v, x, y)
    else:
        hp = ClientHParams(lr=0.01, momentum=0.0, epochs=case.epochs, batch_size=case.batch)
        obs = fedavg_observation(model, v, x, y, hp)
    acfg = base_config().attack
    acfg.name, acfg.mode, acfg.steps = case.attack, case.mode, 1000
    if case.oracle_labels:
        acfg.labels = "oracle"  # the true labels are passed below
    for k, val in case.overrides:
        acfg[k] = val
    spec = attacks.get(case.attack)
    spec.bind(acfg)
    labels = np.sort(np.asarray(y)) if case.attack == "dlf" else np.asarray(y)
    atk = spec.build(obs, model, acfg, box=BOX, labels=labels if case.oracle_labels else None)
    return spec, atk, acfg


def bench_attack(case: AttackCase, n: int, repeats: int, vmap_chunk: int = -1) -> dict:
    spec, atk, acfg = _case_attack(case)
    keys = jax.random.split(jax.random.key(3), n)
    # -1: restarts as `attacks.run` computes them by default (one after another for fedavg
    # mode and DLG/iDLG on CPU, all vmapped otherwise)
    vmap_chunk = resolve_vmap_chunk(vmap_chunk, case.mode, spec.sequential(acfg))
    if spec.kind == "analytic":  # the closed form is the attack: time init

        def f(keys):
            return jax.vmap(atk.init)(keys)

        args = (keys,)
        what = "closed form (init)"
    else:
        states = jax.jit(jax.vmap(atk.init))(keys)
        jax.block_until_ready(states)

        def f(states, key):
            ks = jax.random.split(key, n)
            # the whole new state, not just the loss: XLA would drop the unused gradient
            return chunked_map(atk.step, vmap_chunk)(states, ks)

        args = (states, jax.random.key(4))
        what = "one generation" if case.attack == "ggl" else "one step"
    compiled, compile_s = _aot(f, *args)
    iter_s = _time(compiled, args, repeats)
    cost = _analysis(compiled)
    loops = case.mode == "fedavg" or vmap_chunk > 0
    if case.mode == "fedavg" and n == 1:
        # XLA counts a loop body once: read flops and bytes off a copy whose simulated local
        # steps are unrolled (same computation; only compiled, never run)
        with unrolled_local_steps():
            unrolled, _ = _aot(lambda *a: f(*a), *args)
        u = _analysis(unrolled)
        cost.update(flops=u["flops"], bytes_accessed=u["bytes_accessed"])
        loops = False
    return {
        "name": case.name,
        "setting": case.setting
        + f"; {what}"
        + (f"; vmap_chunk {vmap_chunk}" if vmap_chunk else ""),
        "vmap_chunk": vmap_chunk,
        "kind": "attack",
        "compile_s": compile_s,
        "iter_s": iter_s,
        "n": n,
        "throughput": n / iter_s,
        **cost,
        "cost_counts_loop_once": loops,
        "rss_max_bytes": _rss(),
        "reference_s": case.reference_s if n == 1 else None,
        "reference_what": case.reference_what or ("per iteration" if case.reference_s else ""),
    }


# ----------------------------------------------------------------------------- FedAvg


def bench_fedavg(
    clients: int, images: int, batch: int, epochs: int, repeats: int, quick=False, chunk=0
):
    shape = (8, 8, 3) if quick else C
    model = models.get("cnn", 10, shape)
    v = model.init(jax.random.key(0))
    chunk = resolve_client_chunk(chunk, clients)  # 0: the backend's default
    chunks = math.ceil(clients / chunk)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (chunks, chunk, images) + shape, dtype=np.uint8)
    y = rng.integers(0, 10, (chunks, chunk, images)).astype(np.int32)
    ns = np.full((chunks, chunk), images, np.int32)
    keys = jax.random.split(jax.random.key(1), chunks * chunk).reshape(chunks, chunk)
    s = FLSettings(
        epochs=epochs, batch_size=batch, lr=0.1, momentum=0.0, weight_decay=0.0, client_chunk=chunk
    )
    tr = make_train_round(model, s, np.full(3, 0.5), np.full(3, 0.5))
    args = (v, x, y, ns, keys, jnp.float32(0.1), jnp.zeros((1,), jnp.int32))
    t0 = time.perf_counter()
    compiled = tr.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    first = time.perf_counter()
    jax.block_until_ready(compiled(*args)[0])
    first = time.perf_counter() - first
    # long rounds: one timed call (the AOT-compiled first call has no tracing/compiling)
    iter_s = first if first > 20 else min(first, _time(compiled, args, repeats, warmup=False))
    ref = None
    if batch == 50 and not quick:
        ref = REF_FEDAVG_PER_IMAGE_EPOCH * clients * images * epochs
    is_ref = (clients, images, batch, epochs) == (10, 500, 50, 2) and not quick
    return {
        "name": "fedavg_reference" if is_ref else "fedavg",
        "setting": f"cnn {'x'.join(map(str, shape))}, {clients} clients x {images} images, "
        f"batch {batch}, {epochs} epoch(s), {chunk} clients vmapped",
        "kind": "fedavg",
        "compile_s": compile_s,
        "iter_s": iter_s,
        "n": clients,
        "throughput": clients * images * epochs / iter_s,
        "throughput_unit": "images x epochs / s",
        **_analysis(compiled),
        "cost_counts_loop_once": True,
        "rss_max_bytes": _rss(),
        "reference_s": ref,
        "reference_what": ""
        if ref is None
        else (
            "33.7 s"
            if (clients, images, epochs) == (10, 500, 2)
            else "33.7 s scaled linearly in images x epochs (estimate)"
        ),
    }


def fedavg_grid(suite: str, quick: bool, which: str = "suite"):
    """(clients, images per client, batch, epochs, clients vmapped at a time) per row
    (``which='check'``: every client of a 100-client round, and the reference's round)."""
    if quick:
        return [(2, 4, 2, 1, 10)]
    if which == "check":
        return [(100, 500 if suite == "gpu" else 50, 50, 1, 0), (10, 500, 50, 2, 0)]
    images = 500 if suite == "gpu" else 50
    grid = [(c, images, b, e, 0) for c in (10, 100) for b in (10, 50) for e in (1, 5)]
    if suite == "cpu":  # round time is linear in epochs (the 10-client rows show it)
        grid = [g for g in grid if g[0] == 10 or g[3] == 1]
    # the reference's setting, clients one at a time and vmapped 10 at a time
    return grid + [(10, 500, 50, 2, 1), (10, 500, 50, 2, 10)]


# ----------------------------------------------------------------------------- suite


def _entries(
    suite: str, quick: bool, repeats: int, ns: tuple = (), grid: str = "suite"
) -> dict[str, Callable[[], list[dict]]]:
    ns = ns or ((1, 2) if quick else (1, 8, 64) if suite == "gpu" else (1, 8))
    out: dict[str, Callable[[], list[dict]]] = {}
    for case in attack_cases(quick):

        def run_case(case=case):
            rows = []
            for n in ns:
                try:
                    rows.append(bench_attack(case, n, repeats))
                except Exception as e:  # noqa: BLE001 - e.g. out of memory at N=64
                    log(f"{case.name} N={n}: failed: {type(e).__name__}: {str(e)[:200]}")
                    rows.append({"name": case.name, "n": n, "error": f"{type(e).__name__}: {e}"})
                    break
                r = rows[-1]
                log(
                    f"{case.name} N={n}: compile {r['compile_s']:.1f} s, {r['iter_s'] * 1e3:.1f} ms"
                    f"/iter, {r['throughput']:.1f} restart-iters/s (vmap_chunk {r['vmap_chunk']})"
                )
                if n > 1 and r["vmap_chunk"] and not quick:  # the all-vmapped alternative
                    v = bench_attack(case, n, repeats, vmap_chunk=0)
                    log(f"{case.name} N={n} all vmapped: {v['iter_s'] * 1e3:.1f} ms/iter")
                    rows.append(v)
            return rows

        out[case.name] = run_case
    grid = fedavg_grid(suite, quick, grid)

    def run_fedavg():
        rows = []
        for c, i, b, e, k in grid:
            r = bench_fedavg(c, i, b, e, max(1, repeats - 1), quick, chunk=k)
            log(f"fedavg {r['setting']}: compile {r['compile_s']:.1f} s, round {r['iter_s']:.2f} s")
            rows.append(r)
        return rows

    out["fedavg"] = run_fedavg

    def run_memory():
        from benchmarks import memory

        steps = (2, 4) if quick else (5, 25, 50, 100, 250)
        kinds = ("ig",) if quick else ("ig", "dlf", "dlf_epochs")
        variants = ("off", "sqrt") if quick else memory.VARIANTS
        size = 8 if quick else 16
        rows = memory.run(steps, kinds, variants, "cnn", size, log=log)
        for r in rows:
            r.update(kind="memory", n=1, iter_s=None, throughput=None)
        return rows

    out["memory"] = run_memory
    return out


# benchmarks/torch_reference.py's names for the rows measured by both (N = 1 only)
TORCH_NAMES = {
    "dlg_eval": "dlg",
    "ig": "ig",
    "ig_fedavg": "ig_fedavg",
    "dlf_cnn3": "dlf_cnn3",
    "dlf_cnn": "dlf_cnn",
    "grnn": "grnn",
    "fedavg_reference": "fedavg_round",
}


def _finish(row: dict, peaks: dict, device: str, torch_here: dict | None = None) -> dict:
    row.setdefault("reference_s", None)
    ref, t = row.get("reference_s"), row.get("iter_s")
    row["speedup_vs_reference"] = ref / t if ref and t else None
    name = TORCH_NAMES.get(row.get("name"))
    if torch_here and name in torch_here and row.get("n") in (1, 10) and t:
        if row.get("name") != "fedavg_reference" or "1 clients vmapped" in row.get("setting", ""):
            row["torch_here_s"] = torch_here[name]
            row["speedup_vs_torch_here"] = torch_here[name] / t
    row["device"] = device
    row["jax_version"] = jax.__version__
    fl, by = row.get("flops"), row.get("bytes_accessed")
    if t and fl is not None and by is not None and math.isfinite(fl) and math.isfinite(by):
        tc, tm = fl / peaks["peak_flops_s"], by / peaks["peak_bytes_s"]
        row["achieved_flops_s"] = fl / t
        row["achieved_bytes_s"] = by / t
        row["bound_s"] = max(tc, tm)
        row["bound_frac"] = max(tc, tm) / t
        row["bound"] = "compute" if tc >= tm else "memory"
    return row


def _fmt(x, spec=".3g"):
    return "" if x is None else format(x, spec)


def _precision_tag(row: dict) -> str:
    p = row.get("precision", "f32")
    return "" if p == "f32" else f" @{p}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| name | setting | N | compile s | iter s | throughput | peak MiB | GFLOP | GB moved"
        " | bound frac (bound) | reference s | speedup vs ref | torch here s | vs torch here |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    mem = []
    for r in rows:
        if r.get("kind") == "memory":
            mem.append(r)
            continue
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error'][:80]} | {r.get('n')} |" + " |" * 11)
            continue
        star = "*" if r.get("cost_counts_loop_once") else ""
        bf = r.get("bound_frac")
        lines.append(
            f"| {r['name']}{_precision_tag(r)} | {r['setting']} | {r['n']}"
            f" | {_fmt(r['compile_s'], '.1f')}"
            f" | {_fmt(r['iter_s'], '.4g')} | {_fmt(r['throughput'], '.4g')}"
            f" | {_fmt(r['peak_bytes'] and r['peak_bytes'] / 2**20, '.1f')}"
            f" | {_fmt(r['flops'] and r['flops'] / 1e9, '.3g')}{star}"
            f" | {_fmt(r['bytes_accessed'] and r['bytes_accessed'] / 1e9, '.3g')}{star}"
            f" | {_fmt(bf, '.2f')}{' (' + r['bound'] + ')' if bf is not None else ''}{star}"
            f" | {_fmt(r.get('reference_s'), '.4g')}"
            f" | {_fmt(r.get('speedup_vs_reference'), '.2f')}"
            f" | {_fmt(r.get('torch_here_s'), '.4g')}"
            f" | {_fmt(r.get('speedup_vs_torch_here'), '.2f')} |"
        )
    out = "\n".join(lines)
    if any(r.get("cost_counts_loop_once") for r in rows if r.get("kind") != "memory"):
        out += "\n\n\\* XLA's cost analysis counts a loop body once: flops, bytes and bound are"
        out += " per loop trip, not per call (a lower bound)."
    if mem:
        from benchmarks import memory

        out += "\n\nMemory of one attack step vs unrolled local steps (XLA temp bytes):\n\n"
        out += memory.table(mem)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="cpu", choices=("cpu", "gpu"))
    ap.add_argument("--out", default="")
    ap.add_argument("--only", default="", help="comma-separated entry names (see --list)")
    ap.add_argument("--quick", action="store_true", help="tiny shapes (tests)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--tune_alloc", action="store_true", help="tune_host_allocator()")
    ap.add_argument("--precision", default="f32", help="comma-separated leakjax.precision policies")
    ap.add_argument("--ns", default="", help="restart counts, e.g. 1,64 (default: the suite's)")
    ap.add_argument("--fedavg_grid", default="suite", choices=("suite", "check"))
    ap.add_argument(
        "--torch",
        default="",
        help="JSON of benchmarks/torch_reference.py from the same machine: adds torch_here_s "
        "and speedup_vs_torch_here to the rows both measure",
    )
    args = ap.parse_args(argv)
    torch_here = {}
    if args.torch:
        with open(args.torch) as f:
            torch_here = {r["name"]: float(r["seconds"]) for r in json.load(f)}
    policies = [s for s in args.precision.split(",") if s]
    bad = [s for s in policies if s not in precision.POLICIES]
    if bad or not policies:
        ap.error(f"--precision={args.precision!r}: each must be one of {precision.POLICIES}")
    try:
        ns = tuple(int(n) for n in args.ns.split(",") if n)
    except ValueError:
        ns = (0,)
    if any(n < 1 for n in ns):
        ap.error(f"--ns={args.ns!r}: comma-separated positive restart counts")
    repeats = 1 if args.quick else args.repeats
    entries = _entries(args.suite, args.quick, repeats, ns, args.fedavg_grid)
    if args.list:
        print("\n".join(entries))
        return []
    todo = [s for s in args.only.split(",") if s] or list(entries)
    unknown = [s for s in todo if s not in entries]
    if unknown:
        ap.error(f"unknown entries {unknown}; known: {list(entries)}")
    tuned = tune_host_allocator() if args.tune_alloc else False
    dev = jax.devices()[0]
    device = f"{jax.default_backend()}: {dev.device_kind} x{len(jax.devices())}"
    if jax.default_backend() == "cpu":
        device += f", {os.cpu_count()} cores"
    if args.suite == "gpu" and jax.default_backend() == "cpu":
        log("warning: --suite=gpu on a CPU backend")
    log(f"suite={args.suite} quick={args.quick} device={device} jax={jax.__version__}")
    t_start = time.perf_counter()
    peaks = roofline(args.quick)
    log(
        f"roofline: {peaks['peak_flops_s'] / 1e9:.1f} GFLOP/s matmul, "
        f"{peaks['peak_bytes_s'] / 1e9:.1f} GB/s streaming"
    )
    meta = {
        "name": "roofline",
        "kind": "meta",
        "setting": "f32 2048^2 matmul; f32 256 MiB x + 1 in place (donated)",
        **peaks,
        "suite": args.suite,
        "quick": args.quick,
        "host_allocator_tuned": tuned,
        "load_avg_1min_before": os.getloadavg()[0],
        "fedavg_images_per_client": fedavg_grid(args.suite, args.quick, args.fedavg_grid)[0][1],
        "precision": policies,
    }
    rows = [_finish(meta, peaks, device)]

    def save():  # after every entry, so an interrupted suite keeps what it measured
        if args.out:
            with open(args.out, "w") as f:
                json.dump(rows, f, indent=1)

    for name in todo:
        for policy in policies:
            log(f"--- {name} precision={policy} (load average {os.getloadavg()[0]:.1f})")
            t0 = time.perf_counter()
            with precision.scope(policy):
                new = entries[name]()
            for r in new:
                r["precision"] = policy
                rows.append(_finish(r, peaks, device, torch_here))
            log(f"--- {name} precision={policy} done in {time.perf_counter() - t0:.0f} s")
            save()
    meta["load_avg_1min_after"] = os.getloadavg()[0]
    meta["total_s"] = time.perf_counter() - t_start
    save()
    print(markdown(rows[1:]))
    if meta["fedavg_images_per_client"] != 500 and "fedavg" in todo:
        print(
            f"\nFedAvg rows use {meta['fedavg_images_per_client']} images per client "
            "(the gpu suite uses 500), except fedavg_reference."
        )
    log(f"total {meta['total_s']:.0f} s")
    return rows


if __name__ == "__main__":
    main()
