"""The paper's experiment configs (configs/paper/): every file and preset loads the way
leakjax-sweep loads it, passes validation, names the paper's attack / model / data set, and its
cpu / tiny variants are smaller than the full one. One tiny end-to-end sweep (slow)."""

import json
import os
import pathlib

import numpy as np
import pytest

from leakjax import attacks, config, data, sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "paper"
FILES = sweep.expand(f"{PAPER}/*.py")
# the real CIFAR-10 / MNIST subsets, read before the autouse fixture below clears the variable
REAL_DATA = pathlib.Path(os.environ.get("LEAKJAX_SHARED_DATA") or ROOT.parent / "shared" / "data")

# figure file stem -> (attack, model (+imprint), data set) of the full (GPU) config
EXPECTED = {
    "fig05_dlg_gradient": ("dlg", "cnn", "cifar10"),
    "fig06_idlg_gradient": ("idlg", "cnn", "cifar10"),
    "fig07_ig_gradient": ("ig", "cnn", "cifar10"),
    "fig08_dlf_50images": ("dlf", "cnn3", "cifar100"),
    "fig09_cpa_gradient": ("cpa", "fc2", "tiny_imagenet"),
    "fig10_cpafi_gradient": ("cpa_fi", "vgg16", "imagenet"),
    "fig11_rtf_gradient": ("rtf", "cnn+imprint", "cifar10"),
    "fig15_ggl_gradient": ("ggl", "resnet18", "cifar10"),
    "fig17_grnn_gradient": ("grnn", "cnn", "cifar100"),
    "fig18_dlg_fedavg_100clients": ("dlg", "cnn", "cifar10"),
    "fig19_idlg_fedavg_100clients": ("idlg", "cnn", "cifar10"),
    "fig20_ig_fedavg_100clients": ("ig", "cnn", "cifar10"),
    "fig20_fedleak_fedavg_100clients": ("ig", "cnn", "cifar10"),
    "fig20_sme_fedavg_100clients": ("sme", "cnn", "cifar10"),
    "fig21_dlf_fedavg_100clients": ("dlf", "cnn3", "cifar100"),
    "fig22_cpa_fedavg_100clients": ("cpa", "fc2", "tiny_imagenet"),
    "fig23_cpafi_fedavg_10clients": ("cpa_fi", "vgg16", "tiny_imagenet"),
    "fig24_ggl_fedavg_100clients": ("ggl", "cnn", "cifar10"),
    "fig25_grnn_fedavg_100clients": ("grnn", "cnn", "cifar10"),
    "fig26_rtf_fedavg_100clients": ("rtf", "resnet18+imprint", "cifar10"),
    "fig27_dmgan_mnist_10clients": ("dmgan", "dmgan_discriminator", "mnist"),
    "fig28_ig_fedavg_10clients": ("ig", "cnn", "cifar10"),
    "fig28_sme_fedavg_10clients": ("sme", "cnn", "cifar10"),
    "fig28_fedleak_fedavg_10clients": ("ig", "cnn", "cifar10"),
    "fig29_dlf_fedavg_20clients": ("dlf", "cnn3", "cifar100"),
    "fig30_rtf_fedavg_10clients": ("rtf", "resnet18+imprint", "cifar10"),
    "fig31_ggl_fedavg_10clients": ("ggl", "cnn", "cifar10"),
    "fig32_dmgan_mnist_100clients": ("dmgan", "dmgan_discriminator", "mnist"),
    "fig33_ig_fedavg_batch50": ("ig", "cnn", "cifar10"),
    "fig33_sme_fedavg_batch50": ("sme", "cnn", "cifar10"),
    "fig33_fedleak_fedavg_batch50": ("ig", "cnn", "cifar10"),
    "fig34_dlf_fedavg_batch50": ("dlf", "cnn3", "cifar100"),
    "fig35_rtf_fedavg_batch50": ("rtf", "resnet18+imprint", "cifar10"),
    "fig36_ggl_fedavg_batch50": ("ggl", "cnn", "cifar10"),
    "fig37_ig_fedavg_5epochs": ("ig", "cnn", "cifar10"),
    "fig37_sme_fedavg_5epochs": ("sme", "cnn", "cifar10"),
    "fig37_fedleak_fedavg_5epochs": ("ig", "cnn", "cifar10"),
    "fig38_dlf_fedavg_5epochs": ("dlf", "cnn3", "cifar100"),
    "fig39_rtf_fedavg_5epochs": ("rtf", "resnet18+imprint", "cifar10"),
    "fig40_ggl_fedavg_5epochs": ("ggl", "cnn", "cifar10"),
    "fig41_ig_gradient_tinyimagenet": ("ig", "cnn", "tiny_imagenet"),
    "fig42_rtf_gradient_tinyimagenet": ("rtf", "resnet18+imprint", "tiny_imagenet"),
    "fig43_dmgan_cifar10": ("dmgan", "dmgan_discriminator", "cifar10"),
    "fig44_dlf_fc2_100clients": ("dlf", "fc2", "cifar100"),
    "fig45_dlf_fc2_1000clients": ("dlf", "fc2", "cifar100"),
    "fig46_rtf_cnn_100clients": ("rtf", "cnn+imprint", "cifar10"),
    "fig47_ggl_untrained_generator": ("ggl", "cnn", "cifar10"),
    "fig48_fl_accuracy_cnn": ("none", "cnn", "cifar10"),
    "fig48_fl_accuracy_resnet18": ("none", "resnet18", "cifar10"),
    "fig48_fl_accuracy_mlp": ("none", "fc2", "cifar10"),
    "fig48_fl_accuracy_resnet18_imprint": ("none", "resnet18+imprint", "cifar10"),
    "rgap_gradient": ("rgap", "rgap_cnn", "cifar10"),
    "spear_gradient": ("spear", "fc2", "cifar10"),
}
# (FL setting of the full config: clients, local batch, local epochs)
SETTINGS = {
    "fig20_ig_fedavg_100clients": (100, 10, 1),
    "fig20_fedleak_fedavg_100clients": (100, 10, 1),
    "fig20_sme_fedavg_100clients": (100, 10, 1),
    "fig28_ig_fedavg_10clients": (10, 10, 1),
    "fig28_sme_fedavg_10clients": (10, 10, 1),
    "fig28_fedleak_fedavg_10clients": (10, 10, 1),
    "fig29_dlf_fedavg_20clients": (20, 10, 1),
    "fig33_ig_fedavg_batch50": (100, 50, 1),
    "fig33_sme_fedavg_batch50": (100, 50, 1),
    "fig33_fedleak_fedavg_batch50": (100, 50, 1),
    "fig37_ig_fedavg_5epochs": (100, 10, 5),
    "fig37_sme_fedavg_5epochs": (100, 10, 5),
    "fig37_fedleak_fedavg_5epochs": (100, 10, 5),
    "fig32_dmgan_mnist_100clients": (100, 50, 2),
    "fig44_dlf_fc2_100clients": (100, 10, 2),
    "fig45_dlf_fc2_1000clients": (1000, 10, 2),
    "fig48_fl_accuracy_cnn": (10, 50, 2),
}


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("LEAKJAX_SHARED_DATA", raising=False)
    monkeypatch.delenv("LEAKJAX_GGL_GENERATOR", raising=False)


def _load(path, preset=""):
    cfg = sweep.load_config(f"{path}:{preset}" if preset else path)
    config.validate(cfg)
    return cfg


def _identity(cfg):
    attack = cfg.attack.name
    model = cfg.model.name + ("+imprint" if cfg.model.get("imprint_bins", 0) else "")
    return attack, model, cfg.data.name


def _size(cfg):
    """(FL rounds, attack steps or DMGAN generator steps, attacked images/clients)."""
    if cfg.attack.name == "dmgan":  # its settings as bound (the defaults where unset)
        att = attacks.get("dmgan").bind(cfg.attack)
        return cfg.fl.rounds, att.g_steps, att.eval_steps
    a = cfg.attack
    if a.name == "none":
        return cfg.fl.rounds, 0, 0
    return cfg.fl.rounds, a.steps, len(a.rounds or (0,)) * a.clients


def test_one_file_per_figure_and_helpers_skipped():
    stems = sorted(pathlib.Path(f).stem for f in FILES)
    assert stems == sorted(EXPECTED)
    assert not any(pathlib.Path(f).name.startswith("_") for f in FILES)
    assert (PAPER / "_common.py").is_file() and (PAPER / "README.md").is_file()
    readme = (PAPER / "README.md").read_text()
    assert all(f"{stem}.py" in readme for stem in EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: pathlib.Path(p).stem)
def test_presets_load_validate_and_shrink(path):
    stem = pathlib.Path(path).stem
    full, cpu, tiny = _load(path), _load(path, "cpu"), _load(path, "tiny")
    assert _identity(full) == EXPECTED[stem]
    if stem in SETTINGS:
        assert (full.fl.num_clients, full.fl.batch_size, full.fl.local_epochs) == SETTINGS[stem]
    for small in (cpu, tiny):
        assert _identity(small)[0] == EXPECTED[stem][0]  # same attack
        assert small.data.name == "digits"  # offline data when LEAKJAX_SHARED_DATA is unset
        assert small.fl.num_clients <= full.fl.num_clients
        assert small.fl.batch_size <= full.fl.batch_size
        assert small.fl.local_epochs <= full.fl.local_epochs
    fs, cs, ts = _size(full), _size(cpu), _size(tiny)
    assert all(c <= f for c, f in zip(cs, fs)) and all(t <= c for t, c in zip(ts, cs))
    # RTF is closed-form (one step, one client): its cpu variant is smaller by its data only
    assert cs != fs or EXPECTED[stem][0] == "rtf", f"{stem}: cpu variant not smaller"
    if fs[1] > 1:  # closed-form attacks (RTF) take one step whatever the size
        assert cs[1] < fs[1]
    assert cpu.name.endswith("_cpu") and tiny.name.endswith("_tiny")
    with pytest.raises(ValueError, match="preset"):
        sweep.load_config(f"{path}:huge")


@pytest.mark.parametrize("real", [False, True], ids=["digits", "real"])
def test_cpu_presets_give_every_client_a_local_batch(real, monkeypatch, tmp_path):
    """Every cpu / tiny variant that trains FedAvg passes the simulator's check that each client
    holds one local batch after the 80/20 split, on the offline digits and on the 2,000 real
    images of $LEAKJAX_SHARED_DATA (fig33-36: 100 clients x batch 50 once failed there)."""
    if real:
        (tmp_path / "cifar-10-batches-py").mkdir()
        (tmp_path / "mnist").mkdir()
        monkeypatch.setenv("LEAKJAX_SHARED_DATA", str(tmp_path))
    else:
        monkeypatch.delenv("LEAKJAX_SHARED_DATA", raising=False)
    digits = data.load("digits").train_labels
    checked = 0
    for path in FILES:
        for preset in ("cpu", "tiny"):
            c = _load(path, preset)
            if int(c.fl.rounds) == 0 or c.attack.mode == "gradient":
                continue
            labels = digits if c.data.name == "digits" else np.arange(c.data.max_train) % 10
            part = data.partition_from_config(labels, c)
            smallest = min(len(i) for i in part.train_idx)
            assert smallest >= c.fl.batch_size, (path, preset, smallest, c.fl.batch_size)
            checked += 1
    assert checked >= 40


# :tiny presets whose attack simulates the client's local training on one candidate image per
# local image (GGL: a latent each; DLF: dummies), so that their cost grows with the share:
# exactly one local batch a client (issue 33: they took 31-38 s on 2 cores with 16-160 images)
ONE_BATCH_TINY = (
    "fig31_ggl_fedavg_10clients",
    "fig36_ggl_fedavg_batch50",
    "fig38_dlf_fedavg_5epochs",
    "fig40_ggl_fedavg_5epochs",
    "fig47_ggl_untrained_generator",
    "fig48_fl_accuracy_resnet18",
    "fig48_fl_accuracy_resnet18_imprint",
)


@pytest.mark.parametrize("real", [False, True], ids=["digits", "real"])
def test_costly_tiny_presets_give_each_client_one_local_batch(real, monkeypatch, tmp_path):
    if real:
        (tmp_path / "cifar-10-batches-py").mkdir()
        monkeypatch.setenv("LEAKJAX_SHARED_DATA", str(tmp_path))
    digits = data.load("digits").train_labels
    for stem in ONE_BATCH_TINY:
        c = _load(str(PAPER / f"{stem}.py"), "tiny")
        n = int(c.data.max_train)
        assert c.data.name == ("cifar10" if real else "digits")
        labels = (digits[:n] if n else digits) if not real else np.arange(n) % 10
        part = data.partition_from_config(labels, c)
        sizes = {len(i) for i in part.train_idx}
        assert sizes == {int(c.fl.batch_size)}, (stem, sizes, int(c.fl.batch_size))


def test_rtf_5_epochs_tiny_trains_a_small_model_without_diverging():
    """fig39's :tiny model (5 local epochs behind the imprint block) is not resnet18 (whose
    compile alone takes ~2 min on 2 cores) and its local training stays finite: fc2 there
    diverges within 3-4 steps (benchmarks/rtf_divergence.py)."""
    import jax

    from leakjax import experiment, fl

    c = _load(str(PAPER / "fig39_rtf_fedavg_5epochs.py"), "tiny")
    assert c.fl.local_epochs == 5 and c.model.imprint_bins == 100
    p = experiment.prepare(c)
    variables = p.model.init(jax.random.key(0))
    assert sum(v.size for v in jax.tree.leaves(variables)) < 10**6  # resnet18: 11 M
    x = data.normalize(p.train.x[0], p.mean, p.std)
    hp = p.settings.hparams(0)
    after, loss = fl.client_update(
        p.model.apply,
        variables,
        x,
        p.train.y[0],
        p.train.mask[0],
        jax.random.key(1),
        hp,
        return_loss=True,
    )
    assert hp.epochs == 5 and np.isfinite(float(loss))
    assert all(np.isfinite(np.asarray(v)).all() for v in jax.tree.leaves(after))


def test_real_data_and_generator_from_the_environment(monkeypatch, tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "mnist").mkdir()
    monkeypatch.setenv("LEAKJAX_SHARED_DATA", str(tmp_path))
    ig = sweep.load_config(f"{PAPER}/fig20_ig_fedavg_100clients.py:cpu")
    assert (ig.data.name, ig.data.data_dir, ig.data.image_size) == ("cifar10", str(tmp_path), 16)
    dm = sweep.load_config(f"{PAPER}/fig27_dmgan_mnist_10clients.py:cpu")
    assert (dm.data.name, dm.data.data_dir) == ("mnist", str(tmp_path))
    full = sweep.load_config(f"{PAPER}/fig20_ig_fedavg_100clients.py")
    assert full.data.data_dir == ""  # the full configs name the data set, not a path
    ggl = sweep.load_config(f"{PAPER}/fig24_ggl_fedavg_100clients.py")
    assert ggl.attack.generator_path == "" and ggl.name.endswith("_untrained_generator")
    monkeypatch.setenv("LEAKJAX_GGL_GENERATOR", "/some/generator.msgpack")
    ggl = sweep.load_config(f"{PAPER}/fig24_ggl_fedavg_100clients.py")
    assert ggl.attack.generator_path == "/some/generator.msgpack"
    assert ggl.name == "fig24_ggl_fedavg_100clients"
    g47 = sweep.load_config(f"{PAPER}/fig47_ggl_untrained_generator.py")
    assert g47.attack.generator_path == ""  # the ablation ignores the pretrained generator


def test_no_attack_validation():
    c = sweep.load_config(f"{PAPER}/fig48_fl_accuracy_cnn.py")
    config.validate(c)
    c.fl.rounds = 0
    with pytest.raises(config.ConfigError, match="fl.rounds"):
        config.validate(c)


@pytest.mark.slow
def test_tiny_paper_sweep_end_to_end(tmp_path):
    """Two paper configs (an attack and a Fig. 48 FedAvg run) through leakjax-sweep."""
    specs = [
        f"{PAPER}/fig20_ig_fedavg_100clients.py:tiny",
        f"{PAPER}/fig48_fl_accuracy_mlp.py:tiny",
    ]
    rows = sweep.run_sweep(specs, tmp_path / "study", progress=False)
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    assert rows[0]["attack"] == "ig" and rows[0]["images_attacked"] > 0
    assert rows[1]["attack"] == "none" and rows[1]["final_test_acc"] is not None
    out = tmp_path / "study"
    assert (out / "fl_accuracy.png").is_file() and (out / "results.md").is_file()
    hist = json.loads((out / "fig48_fl_accuracy_mlp-tiny" / "fl_history.json").read_text())
    assert len(hist["round"]) == 3  # round 0 and two FedAvg rounds


# :tiny presets run end to end in the default suite (the rest with -m slow): the RTF presets
# whose fc2 behind the imprint block once diverged at round 0 on real CIFAR-10 (issue 34)
FAST_TINY = ("fig26_rtf_fedavg_100clients", "fig30_rtf_fedavg_10clients")


def _tiny_presets():
    """benchmarks/tiny_presets.py (the benchmark that times the same presets), by path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_tiny_presets", ROOT / "benchmarks" / "tiny_presets.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_params():
    tiny_presets = _tiny_presets()

    out = []
    for spec in tiny_presets.presets():
        stem = pathlib.Path(spec.rsplit(":", 1)[0]).stem
        marks = () if stem in FAST_TINY else (pytest.mark.slow,)
        out.append(pytest.param(spec, id=stem, marks=marks))
    return out


@pytest.mark.parametrize("spec", _tiny_params())
def test_tiny_preset_exits_0(spec, monkeypatch):
    """Every :tiny preset runs to the end (exit 0) through the CLI: on the real CIFAR-10 /
    MNIST subsets when ../shared/data (or $LEAKJAX_SHARED_DATA) holds them, on the built-in
    digits otherwise. All presets: ``pytest -m slow -k test_tiny_preset_exits_0``."""
    if (REAL_DATA / "cifar-10-batches-py").is_dir():
        monkeypatch.setenv("LEAKJAX_SHARED_DATA", str(REAL_DATA))
    row = _tiny_presets().run_one(spec)
    assert row["rc"] == 0, row
