"""benchmarks.run in --quick mode (tiny shapes): rows, keys, finite positive times; and the
two-level remat scan that benchmarks.memory measures."""

from __future__ import annotations

import json
import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from leakjax.fl import client as fl_client

REPO = pathlib.Path(__file__).resolve().parents[1]

KEYS = {
    "name",
    "setting",
    "compile_s",
    "iter_s",
    "n",
    "throughput",
    "peak_bytes",
    "flops",
    "bytes_accessed",
    "reference_s",
    "speedup_vs_reference",
    "device",
    "jax_version",
}


def _positive(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


def test_quick_suite(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--only=ig,cpa,fedavg"]
    proc = subprocess.run(
        cmd + [f"--out={out}"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "--- ig" in proc.stderr  # progress lines
    rows = json.loads(out.read_text())
    meta, rows = rows[0], rows[1:]
    assert meta["name"] == "roofline" and _positive(meta["peak_flops_s"])
    assert _positive(meta["peak_bytes_s"])
    assert sorted({r["name"] for r in rows}) == ["cpa", "fedavg", "ig"]
    assert {r["n"] for r in rows if r["name"] == "ig"} == {1, 2}
    for r in rows:
        assert "error" not in r, r
        assert KEYS <= set(r), KEYS - set(r)
        for k in ("compile_s", "iter_s", "throughput", "peak_bytes", "flops", "bytes_accessed"):
            assert _positive(r[k]), (r["name"], k, r[k])
        assert r["jax_version"] == jax.__version__
        assert r["reference_s"] is None and r["speedup_vs_reference"] is None
    assert "| ig |" in proc.stdout and "| fedavg |" in proc.stdout  # the markdown table


def test_remat_scan_equals_scan():
    """`_remat_scan` (T = 7: two blocks of 2 plus a tail of 3) gives the plain scan's values
    and gradients."""

    def step(c, x):
        c = jnp.tanh(c * 1.1 + x)
        return c, jnp.sum(c)

    xs = jax.random.normal(jax.random.key(0), (7, 3))

    def f(c0, scan):
        c, ys = scan(step, c0, xs)
        return jnp.sum(c**2) + jnp.sum(ys)

    c0 = jnp.arange(3.0)
    plain = lambda c0: f(c0, jax.lax.scan)  # noqa: E731
    remat = lambda c0: f(c0, fl_client._remat_scan)  # noqa: E731
    np.testing.assert_allclose(remat(c0), plain(c0), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(remat)(c0), jax.grad(plain)(c0), rtol=1e-5, atol=1e-7)
