"""Run many experiment configs and tabulate them.

    leakjax-sweep --configs='configs/paper/*.py:cpu' --workdir=runs/study

Every config of the list is loaded and checked (`leakjax.experiment.prepare`: its settings,
data and a dry build of its attack) before the first one runs: a glob that matches nothing, a
missing file, a bad preset or an impossible setting in any of them is one line naming the
config and the key, exit 2, and nothing is written. Each config then runs in its own
sub-workdir (named after the file); a config that fails while running is recorded with its
error and the sweep goes on. Files whose name starts with ``_`` (helper
modules such as configs/paper/_common.py) are skipped by the globs. Every config runs through
`leakjax.experiment.run` (``attack.name='none'``: FedAvg only; a client-side attack such as
DMGAN: its malicious client in the federation).

Outputs in ``--workdir``: ``results.csv`` and ``results.md`` (one row per experiment:
attack, data set, model, clients, batch size, local epochs, images attacked, PSNR
mean/median, SSIM, label accuracy, success rate, final test accuracy (global model on the
test split), final local test accuracy (on the clients' local test splits),
``tracked_fraction`` (DMGAN only: the share of its generated images a held-out classifier
assigns to the tracked class after the last round; a summary's per-round list shows its last
value), wall seconds, device, status),
``contact_sheet.png`` (every experiment's grid.png) and ``fl_accuracy.png`` (accuracy vs
round: one line per model for the FedAvg-only runs, the paper's Fig. 48, when the sweep has
any; else one line per experiment with an FL history).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import logging
import pathlib
import shutil
import sys
import time
import traceback

import jax
import numpy as np
from absl import app, flags

from leakjax import compile_cache, config_files, distributed, experiment, figures, plan, report
from leakjax.atomic import atomic_open
from leakjax.types import ConfigError

COLUMNS = (
    "experiment",
    "status",
    "attack",
    "mode",
    "defense",
    "adaptive",
    "epsilon",
    "dataset",
    "model",
    "num_clients",
    "batch_size",
    "local_epochs",
    "images_attacked",
    "psnr_mean",
    "psnr_median",
    "ssim_mean",
    "label_accuracy",
    "success_rate",
    "clients_attacked",
    "clients_exposed_fraction",
    "images_recovered_fraction",
    "client_psnr_median",
    "client_psnr_p90",
    "final_test_acc",
    "final_local_test_acc",
    "tracked_fraction",
    "wall_seconds",
    "device",
    "error",
)


def _module(path: str):
    p = pathlib.Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    mod_spec = importlib.util.spec_from_file_location(f"leakjax_cfg_{p.stem}", p)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod


def load_config(spec: str):
    """``path.py[:preset][#variant]`` -> the ConfigDict its ``get_config(preset)`` returns (or,
    for a family file, ``get_configs(preset)[variant]``).

    Any failure (missing file, bad preset, an error inside the file) is a ConfigError naming
    the spec and the cause.
    """
    base, _, variant = spec.partition("#")
    path, _, preset = base.partition(":")
    with _naming(spec):
        if not variant:  # the CLI's loader: the same checks and messages
            return config_files.load(base)
        configs = _module(path).get_configs(preset)
        return config_files.as_config(configs[variant], f"config file {path}: get_configs()")


@contextlib.contextmanager
def _naming(spec: str):
    """Any exception inside -> one-line ConfigError ``--configs: <spec>: <cause>``."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - a config that cannot load is bad input
        if isinstance(e, ConfigError | FileNotFoundError):  # DataError included
            cause = str(e).splitlines()[0] if str(e) else type(e).__name__
        else:
            cause = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        raise ConfigError(f"--configs: {spec}: {' '.join(cause.split())}") from e


def _variants(spec: str) -> list[str]:
    """A family file (``get_configs(preset) -> {variant: config}``, e.g. configs/defenses/)
    expands into one spec per variant."""
    path, _, preset = spec.partition(":")
    if "#" in spec:  # one variant named already
        return [spec]
    with _naming(spec):
        mod = _module(path)
        if not hasattr(mod, "get_configs"):
            return [spec]
        return [f"{spec}#{v}" for v in mod.get_configs(preset)]


def expand(patterns: str) -> list[str]:
    """Comma-separated globs, each optionally followed by ``:preset``; files that a glob
    pattern matches whose name starts with ``_`` (helper modules) are left out (a file named
    without wildcards is kept). A glob that matches no config file, or a file that does not
    exist, is a ConfigError."""
    specs = []
    for pat in [s for s in patterns.split(",") if s.strip()]:
        path, sep, preset = pat.strip().partition(":")
        if glob.has_magic(path):
            matched = sorted(glob.glob(path))
            files = [f for f in matched if not pathlib.Path(f).name.startswith("_")]
            if not files:
                raise ConfigError(
                    f"--configs: {path!r} matches no config file"
                    + (" (only helper modules starting with '_')" if matched else "")
                )
        else:  # a packaged config when the path does not exist here (as the CLI does)
            files = [config_files.resolve(path)]
        specs += [f + (sep + preset if sep else "") for f in files]
    return [v for spec in specs for v in _variants(spec)]


def _finished(wd: pathlib.Path) -> dict | None:
    """The summary of a finished experiment in ``wd`` (its metrics.json), else None."""
    try:
        return json.loads((wd / "metrics.json").read_text())["summary"]
    except (OSError, ValueError, KeyError):
        return None


def check(specs: list[str], *, progress: bool = True) -> list:
    """Load and check every config spec (`leakjax.experiment.prepare`: settings, data, a dry
    build of the attack) before anything runs or is written; returns the configs.

    Raises ConfigError ``--configs: <spec>: <cause>`` for the first bad one.
    """
    configs = []
    for i, spec in enumerate(specs, 1):
        if progress:
            print(f"--- checking [{i}/{len(specs)}] {spec}", flush=True)
        cfg = load_config(spec)
        with _naming(spec):
            experiment.prepare(cfg)
        configs.append(cfg)
    return configs


def run_sweep(
    specs: list[str], workdir, *, progress: bool = True, resume: bool = False, split: bool = False
) -> list[dict]:
    """Run every config spec into ``workdir/<stem>``; returns the result rows.

    Every spec is checked first (`check`, and the workdir by `leakjax.plan.check_workdir`):
    a bad one raises ConfigError and nothing is written.

    ``resume``: continue a sweep in ``workdir``: finished experiments (with a metrics.json)
    are read back, not rerun; an interrupted one continues from its checkpoints
    (`experiment.run(resume=True)`); failed or missing ones run afresh.

    ``split`` (several processes, `leakjax.distributed`): the experiments form a work
    queue; a process that is free takes the next one (`distributed.next_index`) and runs it
    as a one-process run on its own devices (`distributed.local`) into the shared
    ``workdir`` (every process must see the same folder), so a long experiment does not hold
    the others back; at the end every process waits for the others and process 0 merges
    every process's rows into one table. Without ``split`` every experiment runs over all
    processes in turn.
    """
    root = pathlib.Path(workdir)
    plan.check_workdir(root, resume=resume)
    if root.exists() and any(root.iterdir()) and not resume:
        raise ConfigError(
            f"workdir {str(root)!r} exists and is not empty; choose a new --workdir "
            "(or pass --resume to continue that sweep)"
        )
    configs = check(specs, progress=progress)
    distributed.barrier("leakjax-sweep: configs checked")  # every process: now process 0 writes
    main = distributed.is_main_process()
    if main:
        root.mkdir(parents=True, exist_ok=True)
    names = _names(specs)
    spread = split and jax.process_count() > 1  # each process its share of the experiments
    if spread:
        distributed.barrier("leakjax-sweep: workdir made")  # the others write into it too
    rows = {}
    for i in _queue(len(specs), spread):
        with distributed.local() if split else contextlib.nullcontext():
            wd = root / names[i]
            rows[i] = _run_one(specs[i], configs[i], wd, i, len(specs), resume, progress)
        if main and not spread:  # the table so far, after every experiment
            _write_table(root, [rows[j] for j in sorted(rows)])
    if spread:
        with atomic_open(_ROWS.format(root=root, i=jax.process_index()), "w") as f:
            json.dump(rows, f)
        distributed.wait_for_all("leakjax-sweep: every share done")
        if not main:
            return [rows[j] for j in sorted(rows)]
        for k in range(jax.process_count()):  # every process's rows, in the specs' order
            path = pathlib.Path(_ROWS.format(root=root, i=k))
            rows.update({int(j): r for j, r in json.loads(path.read_text()).items()})
            path.unlink()
    rows = [rows[j] for j in sorted(rows)]
    if not main:
        return rows
    _write_table(root, rows)
    contact_sheet(root, [r["experiment"] for r in rows])
    fl_accuracy_plot(root, [r["experiment"] for r in rows])
    if any(r.get("defense") not in (None, "none") for r in rows):
        figures.plot_frontier(root / "frontier.png", rows)
    return rows


_ROWS = "{root}/.rows-process-{i}.json"  # `run_sweep(split=True)`: one process's rows


def _queue(total: int, spread: bool):
    """The experiments this process runs: all, in order; ``spread``: the ones it takes from
    the queue shared by every process, each as soon as it is free."""
    if not spread:
        yield from range(total)
        return
    while (i := distributed.next_index("leakjax-sweep: next experiment")) < total:
        yield i


def _names(specs: list[str]) -> list[str]:
    """Each spec's sub-workdir name: the file's stem, ``-preset``, ``-variant``; the same spec
    twice gets ``-2``, ``-3``."""
    names, used = [], set()
    for spec in specs:
        base_spec, _, variant = spec.partition("#")
        path, _, preset = base_spec.partition(":")
        name = pathlib.Path(path).stem + (f"-{preset}" if preset else "")
        name += f"-{variant}" if variant else ""
        base, k = name, 2
        while name in used:  # the same spec twice: keep both runs
            name, k = f"{base}-{k}", k + 1
        used.add(name)
        names.append(name)
    return names


def _run_one(spec, cfg, wd: pathlib.Path, i: int, total: int, resume: bool, progress: bool):
    """One experiment into ``wd``: its result row (a failure is recorded, not raised)."""
    root, name = wd.parent, wd.name
    main = distributed.is_main_process()
    row = {"experiment": name, "status": "ok"}
    t0 = time.perf_counter()
    done = _finished(wd) if resume else None
    print(f"=== [{i + 1}/{total}] {spec} -> {wd}" + (" (done)" if done else ""), flush=True)
    try:
        if done is not None:
            summary = done
        else:
            again = resume and wd.exists() and (wd / "config.json").exists()
            if resume and wd.exists() and not again:
                shutil.rmtree(wd)  # failed before it wrote anything: start afresh
            if main:
                (root / f"{name}.error.txt").unlink(missing_ok=True)
            summary = experiment.run(cfg, wd, progress=progress, resume=again)
        row.update({k: _last(summary[k]) for k in COLUMNS if k in summary})
    except Exception as e:  # noqa: BLE001 - record and go on
        row["status"] = "failed"
        row["error"] = f"{type(e).__name__}: {' '.join(str(e).split())}"[:300]
        row["wall_seconds"] = round(time.perf_counter() - t0, 1)
        if main:
            (root / f"{name}.error.txt").write_text(traceback.format_exc())
        print(f"!!! {spec} failed: {row['error']}", flush=True)
    return {k: row.get(k) for k in COLUMNS}


def _write_table(root: pathlib.Path, rows: list[dict]) -> None:
    report.write_csv(root / "results.csv", rows)
    report.write_markdown_table(root / "results.md", rows, columns=list(COLUMNS))


def _last(value):
    """A summary's per-round list (e.g. DMGAN's ``tracked_fraction``): its last value."""
    return value[-1] if isinstance(value, list) and value else value


def contact_sheet(root: pathlib.Path, names: list[str]):
    """One picture with every experiment's grid.png, each captioned with its experiment's
    name under a one-line title; returns the saved figure (None without any grid.png)."""
    from PIL import Image

    thumbs, captions = [], []
    for n in names:
        g = root / n / "grid.png"
        if g.is_file():
            with Image.open(g) as im:
                im = im.convert("RGB")
                im.thumbnail((480, 480))
                thumbs.append(np.asarray(im, np.float32) / 255.0)
                captions.append(n)
    if not thumbs:
        return None
    height = max(t.shape[0] for t in thumbs)  # one cell size: white below shorter grids
    cells = np.ones((len(thumbs), height, 480, 3), np.float32)
    for cell, t in zip(cells, thumbs, strict=True):
        cell[: t.shape[0], : t.shape[1]] = t
    title = f"{len(thumbs)} experiment{'s' if len(thumbs) > 1 else ''}: reconstructions"
    return figures.save_image_grid(
        root / "contact_sheet.png", cells, title=title, captions=captions
    )


def fl_accuracy_plot(root: pathlib.Path, names: list[str]) -> None:
    """Accuracy vs round from the experiments' fl_history.json files.

    When some experiments trained FedAvg without an attack (``attack.name='none'``, the
    paper's Fig. 48 configs), only those are drawn, one line per model (labelled by
    ``model.name``, plus ``+imprint`` with an imprint block); otherwise one line per
    experiment with more than one round. The local-test accuracy is drawn where the
    history has it, else the test-split accuracy.
    """
    all_curves, fl_only = {}, {}
    for n in names:
        h = root / n / "fl_history.json"
        if not h.is_file():
            continue
        hist = json.loads(h.read_text())
        key = "local_test_acc" if "local_test_acc" in hist else "test_acc"
        if key not in hist or len(hist["round"]) < 2:
            continue
        all_curves[n] = (hist["round"], hist[key])
        cfg_file = root / n / "config.json"
        cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
        if cfg.get("attack", {}).get("name") == "none":
            model = cfg.get("model", {})
            label = str(model.get("name", n)) + ("+imprint" if model.get("imprint_bins") else "")
            if label in fl_only:
                label = f"{label} ({n})"
            fl_only[label] = (hist["round"], hist[key])
    curves = fl_only or all_curves
    if curves:
        title = "FedAvg without attack (paper Fig. 48)" if fl_only else None
        figures.plot_curves(
            root / "fl_accuracy.png", curves, "round", "accuracy (local test)", title=title
        )


_CONFIGS = flags.DEFINE_string("configs", None, "Comma-separated config globs, each [:preset].")
_WORKDIR = flags.DEFINE_string("workdir", None, "New or empty directory for the sweep.")
_RESUME = flags.DEFINE_bool(
    "resume", False, "Continue the sweep in --workdir: finished experiments are not rerun."
)
_SPLIT = flags.DEFINE_bool(
    "split",
    False,
    "With --num_processes N: the experiments are a queue; a free process takes the next one "
    "and runs it on its own devices into the shared --workdir; process 0 writes the one table "
    "(else each experiment runs over all processes).",
)
distributed.define_flags()  # --coordinator_address, --num_processes, --process_id
for _name in distributed.FLAG_NAMES:
    flags.declare_key_flag(_name)
compile_cache.define_flag()  # --jax_cache_dir: experiments of one shape compile once
flags.declare_key_flag(compile_cache.FLAG)


def main(argv) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _CONFIGS.value or not _WORKDIR.value:
        _fail("--configs and --workdir are required")

    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # the TPU INFO line
    try:
        # before any JAX use
        distributed.start_from_flags()
        compile_cache.enable_from_flag()
        specs = expand(_CONFIGS.value)
        rows = run_sweep(specs, _WORKDIR.value, resume=_RESUME.value, split=_SPLIT.value)
    except ConfigError as e:
        _fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    failed = [r["experiment"] for r in rows if r["status"] != "ok"]
    ok = f"{len(rows) - len(failed)}/{len(rows)}"
    if distributed.is_main_process():
        print(f"{ok} experiments ok; results in {_WORKDIR.value}")
    else:  # --split: this process's share (process 0 prints the whole sweep)
        print(f"process {jax.process_index()}: {ok} of its experiments ok")
    if failed:
        print(f"failed: {', '.join(failed)}")
        sys.exit(1)


def _fail(msg: str, code: int = 2) -> None:
    print(f"leakjax-sweep: error: {msg}", file=sys.stderr)
    sys.exit(code)


def _usage() -> str:
    """The sweep's own flags (absl's --help lists only the launcher script's)."""
    own = flags.FLAGS.module_help(sys.modules[__name__])
    return (
        f"{__doc__.strip()}\n\nUsage: leakjax-sweep --configs=GLOB[:preset][,GLOB[:preset]...] "
        "--workdir=DIR [--resume] [--split --coordinator_address=H:P --num_processes=N "
        "--process_id=I]\n\nExit codes: 0 every experiment ok; 1 some failed while "
        "running (recorded in results.csv);\n2 bad input (one line on stderr, nothing written)."
        f"\n\n{own}\n\n(--helpfull lists absl's and JAX's flags too.)"
    )


def _parse(argv):
    """absl's parser, but --help lists the sweep's flags and a bad flag is one line, exit 2."""
    if any(arg in ("--help", "-h", "-?", "--helpshort") for arg in argv[1:]):
        print(_usage())
        sys.exit(0)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _fail(" ".join(str(e).split()))


def entry() -> None:
    app.run(main, flags_parser=_parse)


if __name__ == "__main__":
    entry()
