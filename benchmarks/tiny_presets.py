"""Wall time of every ``:tiny`` preset (configs/*.py, configs/paper/*.py), end to end through
the CLI, one after another: ``:tiny`` must mean seconds (under ~30 s on 2 cores).

    python -m benchmarks.tiny_presets --out=docs/perf/tiny_presets.json [--only=fig26]

Each preset runs in a fresh process (compile included, persistent cache as configured by
LEAKJAX_JAX_CACHE) into a temporary workdir; the table lists the seconds, the exit status and,
for a failure, the error line.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]
# defined when run as a script, so that tests can import presets() and run_one()
_OUT = _ONLY = _LIMIT = None


def _define_flags() -> None:
    global _OUT, _ONLY, _LIMIT
    _OUT = flags.DEFINE_string("out", "", "Write the table as JSON here.")
    _ONLY = flags.DEFINE_string("only", "", "Run only presets whose file name contains this.")
    _LIMIT = flags.DEFINE_float("limit", 30.0, "Seconds a tiny preset may take (flagged above).")


def presets() -> list[str]:
    files = sorted(glob.glob(str(ROOT / "configs" / "*.py")))
    files += sorted(glob.glob(str(ROOT / "configs" / "paper" / "[!_]*.py")))
    out = []
    for f in files:
        text = pathlib.Path(f).read_text()
        if '"tiny"' in text or "shrink(" in text:
            out.append(f"{os.path.relpath(f, ROOT)}:tiny")
    return out


def run_one(spec: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "leakjax",
                f"--config={spec}",
                f"--workdir={tmp}/wd",
                "--config.output.progress=False",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        seconds = time.perf_counter() - t0
    err = [ln for ln in out.stderr.splitlines() if ln.startswith("leakjax: error")]
    return {
        "preset": spec,
        "seconds": round(seconds, 1),
        "rc": out.returncode,
        "error": err[0] if err else "",
    }


def main(argv) -> None:
    del argv
    rows = []
    for spec in presets():
        if _ONLY.value and _ONLY.value not in spec:
            continue
        row = run_one(spec)
        flag = " SLOW" if row["seconds"] > _LIMIT.value else ""
        print(f"{row['seconds']:7.1f} s  rc={row['rc']}  {spec}{flag} {row['error']}", flush=True)
        rows.append(row)
    slow = [r for r in rows if r["seconds"] > _LIMIT.value]
    print(
        f"{len(rows)} presets, {len(slow)} over {_LIMIT.value:.0f} s, "
        f"{sum(r['rc'] != 0 for r in rows)} failed; load {os.getloadavg()[0]:.2f}"
    )
    if _OUT.value:
        pathlib.Path(_OUT.value).write_text(
            json.dumps(
                {
                    "rows": rows,
                    "limit": _LIMIT.value,
                    "date": time.strftime("%Y-%m-%d"),
                    "load": os.getloadavg(),
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    _define_flags()
    app.run(main)
