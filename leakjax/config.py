"""The config schema (ml_collections) and its validation.

Every experiment is a `get_config()` file in configs/ that starts from
`base_config()` and overrides a few fields. `validate` checks names, types and
ranges before any work starts and raises `ConfigError` with a one-line message
naming the key and the allowed values.
"""

from __future__ import annotations

import difflib

import ml_collections

from leakjax import attacks, data, defenses, distributed, models, precision
from leakjax import settings as settings_lib
from leakjax.types import ConfigError

PARTITIONS = ("iid", "dirichlet", "fixed_classes")
NORMALIZE = ("dataset", "half", "none")
ATTACK_MODES = ("gradient", "fedavg")
NO_ATTACK = "none"  # attack.name: train FedAvg and attack nothing


def base_config() -> ml_collections.ConfigDict:
    """Defaults: the reference's server_attack.py settings (REFERENCE.md §4)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.name = ""

    c.data = ml_collections.ConfigDict()
    c.data.name = "cifar10"
    c.data.data_dir = ""  # official-format files / npz path / tfds data_dir
    c.data.source = "auto"  # auto | official | tfds | builtin | npz
    c.data.image_size = 0  # 0: the data set's own size (digits: 16)
    c.data.normalize = "dataset"  # dataset | half (the reference's mean=std=0.5) | none
    c.data.partition = "dirichlet"
    c.data.beta = 0.5
    c.data.classes_per_client = 2
    c.data.test_fraction = 0.2
    c.data.min_size = 15
    c.data.max_train = 0  # keep only the first N training images (0: all)
    c.data.max_test = 0  # evaluate FedAvg's global accuracy on the first N test images (0: all)

    c.model = ml_collections.ConfigDict()
    c.model.name = "cnn"
    c.model.conv_impl = "auto"
    c.model.imprint_bins = 0  # > 0: prepend RTF's imprint block with this many bins
    c.model.imprint_distribution = "laplace"  # laplace | gaussian | uniform (its bin quantiles)

    c.fl = ml_collections.ConfigDict()
    c.fl.num_clients = 10
    c.fl.client_fraction = 1.0
    c.fl.rounds = 10
    c.fl.local_epochs = 2
    c.fl.batch_size = 50
    c.fl.lr = 0.1
    c.fl.lr_decay = 0.95
    c.fl.momentum = 0.0
    c.fl.weight_decay = 0.0
    c.fl.client_chunk = 0  # clients vmapped together (0: auto = 1 on CPU, 10 on GPU)
    c.fl.num_devices = 1  # split clients over this many devices (0: all)
    c.fl.eval_batch = 500

    c.attack = ml_collections.ConfigDict()
    c.attack.name = "ig"
    c.attack.mode = "fedavg"  # fedavg: a client's model difference; gradient: one gradient
    c.attack.rounds = (-1,)  # rounds whose updates are attacked (-1: the last round)
    # attacked clients per attacked round (chosen at random); -1: every sampled client (audit)
    c.attack.clients = 1
    c.attack.batch_size = 1  # gradient mode: images in the shared gradient
    c.attack.steps = 4000
    c.attack.restarts = 1
    c.attack.chunk = 100
    c.attack.labels = "auto"  # auto | oracle | a leakjax.labels method | the attack's own modes
    c.attack.success_psnr = 19.0
    c.attack.checkpoint_every = 1000  # attacks longer than this checkpoint every K steps
    c.attack.num_devices = 1  # split the attacked trials over this many devices (0: all)
    # restarts/trials one step computes at once: -1 auto (1 for fedavg mode on CPU, else all),
    # 0 all vmapped, k >= 1 a lax.map of k vmapped at a time (attacks.base.resolve_vmap_chunk)
    c.attack.vmap_chunk = -1
    # under a defense, simulate its public part (clipping; ignore zeroed coordinates)
    c.attack.adaptive = True
    # Every other attack.<key> is a setting of the chosen attack, with that attack's own
    # default when absent (`leakjax --list=attacks` lists them; leakjax/attacks/<name>.py).

    # defense.name: 'none', one defense or a comma-separated chain (`leakjax --list=defenses`);
    # every other defense.<key> is a setting of a chained defense (leakjax/defenses/<name>.py).
    c.defense = ml_collections.ConfigDict()
    c.defense.name = "none"

    # matmul/conv precision (leakjax.precision): 'f32' | 'tf32' | 'bf16' (bf16 operands, f32
    # accumulation), for FedAvg's simulation (fl) and for the attack (attack)
    c.precision = ml_collections.ConfigDict()
    c.precision.attack = "f32"
    c.precision.fl = "f32"

    c.output = ml_collections.ConfigDict()
    c.output.grid_images = 16
    c.output.progress = True
    return c


# groups whose keys are open: the chosen attack's / chained defenses' settings, checked by
# their binders (`spec.bind`, `defenses.bind`)
_OPEN_GROUPS = ("attack", "defense")


def unknown_key(key: str, config=None) -> str:
    """The one-line message for a key that is not in the schema: ``fl.lrr is not a config
    setting; did you mean fl.lr? (settings of fl: ...)`` (``config``: its model's options are
    model settings too)."""
    base = base_config()
    group, _, field = key.rpartition(".")
    known = list(base[group].keys()) if group in base and group not in _OPEN_GROUPS else []
    if group == "model" and config is not None:
        known += list(model_options(config))
    if not group:
        known = [k for k in base.keys() if not isinstance(base[k], ml_collections.ConfigDict)]
    near = difflib.get_close_matches(field, known, n=1)
    hint = f"; did you mean {group + '.' if group else ''}{near[0]}?" if near else ""
    listed = f" (settings of {group}: {', '.join(known)})" if group and known else ""
    return f"{key} is not a config setting{hint}{listed}"


def model_options(config) -> dict:
    """The options of ``config.model.name`` (`leakjax.models.options`) with their defaults:
    keys of the ``model`` group beside the base schema's (``model.head='cpa'`` for vgg16)."""
    name = config.model.get("name", "cnn") if "model" in config else "cnn"
    return models.options(name) if name in models.names() else {}


def check_keys(config) -> None:
    """Every key the config sets is in the schema (`base_config`, plus the model's options),
    outside the open groups: a misspelt key in a config file (``c.fl.lrr = 0.3``) is refused,
    not silently ignored."""
    base = base_config()
    options = model_options(config)
    for key in config.keys():
        value = config[key]
        if key not in base:
            raise ConfigError(unknown_key(str(key)))
        if key in _OPEN_GROUPS or not isinstance(base[key], ml_collections.ConfigDict):
            continue
        if not isinstance(value, ml_collections.ConfigDict):
            raise ConfigError(f"{key} must be a group of settings, got {value!r}")
        for field in value.keys():
            if field not in base[key] and not (key == "model" and field in options):
                raise ConfigError(unknown_key(f"{key}.{field}", config))


def _choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of {tuple(dict.fromkeys(allowed))}")


def _num(key: str, value, *, low=None, high=None, low_open=False, high_open=False, integer=False):
    """A finite number (an int with ``integer``) in the range, else a one-line ConfigError."""
    meta = dict(low=low, high=high, low_open=low_open, high_open=high_open)
    settings_lib.check_value(key, value, int if integer else float, meta)


def _positive(key: str, value, *, allow_zero: bool = False, integer: bool = False) -> None:
    _num(key, value, low=0, low_open=not allow_zero, integer=integer)


def _device_count() -> int:
    return distributed.device_count()


def _check_devices(key: str, value) -> None:
    _num(key, value, low=0, integer=True)
    if value > _device_count():
        raise ConfigError(
            f"{key}={value} but only {_device_count()} device(s) are available (0 uses all of them)"
        )
    processes = distributed.process_count()  # a mesh over some processes' devices: refused
    if processes > 1 and value not in (0, 1, _device_count()):
        raise ConfigError(
            f"{key}={value} with {processes} processes: use 0 (all {_device_count()} devices of "
            "every process) or 1 (each process on one device of its own)"
        )


ALL_CLIENTS = -1  # attack.clients: every client sampled in an attacked round (audit mode)


def check_attack_clients(clients, num_clients: int) -> None:
    """attack.clients is -1 (audit: every sampled client) or 1..fl.num_clients."""
    ok = isinstance(clients, int) and not isinstance(clients, bool)
    if not ok or not (clients == ALL_CLIENTS or 1 <= clients <= num_clients):
        raise ConfigError(
            f"attack.clients must be -1 (every client sampled in an attacked round) or "
            f"1..{num_clients} (fl.num_clients), got {clients!r}"
        )


def validate(config) -> None:
    """Static checks (names, types, finite ranges, the attack's settings bound with its
    defaults). Data-dependent checks happen in `experiment.prepare`."""
    for group in ("data", "model", "fl", "attack"):
        if group not in config:
            raise ConfigError(f"config has no '{group}' group")
    check_keys(config)
    d, m, f, a = config.data, config.model, config.fl, config.attack
    _num("seed", config.seed, low=0, integer=True)
    if not data.is_tfds_name(d.name):
        _choice("data.name", d.name, data.names())
    _choice("data.normalize", d.normalize, NORMALIZE)
    _choice("data.partition", d.partition, PARTITIONS)
    _positive("data.beta", d.beta)
    _positive("data.classes_per_client", d.classes_per_client, integer=True)
    _num("data.test_fraction", d.test_fraction, low=0, high=1, high_open=True)
    _positive("data.min_size", d.min_size, allow_zero=True, integer=True)
    _positive("data.max_train", d.max_train, allow_zero=True, integer=True)
    _positive("data.max_test", d.get("max_test", 0), allow_zero=True, integer=True)
    _positive("data.image_size", d.image_size, allow_zero=True, integer=True)
    _choice("model.name", m.name, models.names())
    _choice("model.conv_impl", m.get("conv_impl", "auto"), models.CONV_IMPLS)
    _positive("model.imprint_bins", m.get("imprint_bins", 0), allow_zero=True, integer=True)
    if m.get("imprint_bins", 0) == 1:
        raise ConfigError("model.imprint_bins must be 0 (no imprint block) or >= 2, got 1")
    _choice(
        "model.imprint_distribution",
        m.get("imprint_distribution", "laplace"),
        ("laplace", "gaussian", "uniform"),
    )
    _positive("fl.num_clients", f.num_clients, integer=True)
    _num("fl.client_fraction", f.client_fraction, low=0, low_open=True, high=1)
    _positive("fl.rounds", f.rounds, allow_zero=True, integer=True)
    _positive("fl.local_epochs", f.local_epochs, integer=True)
    _positive("fl.batch_size", f.batch_size, integer=True)
    _positive("fl.lr", f.lr)
    _positive("fl.lr_decay", f.lr_decay)
    _num("fl.momentum", f.momentum, low=0, high=1, high_open=True)
    _positive("fl.weight_decay", f.weight_decay, allow_zero=True)
    _positive("fl.client_chunk", f.client_chunk, allow_zero=True, integer=True)
    _check_devices("fl.num_devices", f.num_devices)
    _positive("fl.eval_batch", f.get("eval_batch", 500), integer=True)
    if "output" in config:
        _positive("output.grid_images", config.output.get("grid_images", 16), integer=True)
        progress = config.output.get("progress", True)
        if not isinstance(progress, bool):
            raise ConfigError(f"output.progress must be True or False, got {progress!r}")
    for side, policy in precision.policies(config).items():
        _choice(f"precision.{side}", policy, precision.POLICIES)
    pipeline = defenses.bind(config.get("defense"))
    _choice("attack.name", a.name, (*attacks.names(), NO_ATTACK))
    if a.name == NO_ATTACK:  # FedAvg only (the paper's Fig. 48): no attack setting applies
        if f.rounds < 1:
            raise ConfigError(f"fl.rounds must be >= 1 when attack.name={NO_ATTACK!r}")
        return
    spec = attacks.get(a.name)
    chosen = precision.policies(config)
    if isinstance(spec, attacks.ClientAttackSpec) and set(chosen.values()) != {"f32"}:
        raise ConfigError(  # a malicious client's run mixes FedAvg and attack: not split yet
            f"precision.fl={chosen['fl']!r}, precision.attack={chosen['attack']!r}: "
            f"attack.name={a.name!r} (a malicious client) runs in 'f32' only"
        )
    spec.requires(config)  # what the attack needs of the rest of the config (RTF: imprint_bins)
    _choice("attack.mode", a.mode, ATTACK_MODES)
    spec.check_mode(a.mode)
    if a.mode == "fedavg" and f.rounds < 1:
        raise ConfigError("fl.rounds must be >= 1 when attack.mode='fedavg'")
    if a.mode == "fedavg":  # gradient mode attacks the final model: attack.rounds unused
        if not tuple(a.rounds):
            raise ConfigError(
                f"attack.rounds=() attacks no round: give at least one of -{f.rounds}.."
                f"{f.rounds - 1} (negative counts from the end; -1 is the last round)"
            )
        for r in tuple(a.rounds):
            if isinstance(r, bool) or not isinstance(r, int) or not -f.rounds <= r < f.rounds:
                raise ConfigError(
                    f"attack.rounds entry {r!r} is not a round: use -{f.rounds}..{f.rounds - 1} "
                    f"(fl.rounds={f.rounds}; negative counts from the end)"
                )
    check_attack_clients(a.clients, int(f.num_clients))
    _positive("attack.batch_size", a.batch_size, integer=True)
    _positive("attack.steps", a.steps, integer=True)
    _positive("attack.restarts", a.restarts, integer=True)
    _positive("attack.chunk", a.chunk, integer=True)
    _positive("attack.success_psnr", a.success_psnr)
    _positive("attack.checkpoint_every", a.checkpoint_every, integer=True)
    _check_devices("attack.num_devices", a.get("num_devices", 1))
    vmap_chunk = a.get("vmap_chunk", -1)
    if isinstance(vmap_chunk, bool) or not isinstance(vmap_chunk, int) or vmap_chunk < -1:
        raise ConfigError(
            f"attack.vmap_chunk must be -1 (auto), 0 (all) or a positive int, got {vmap_chunk!r}"
        )
    adaptive = a.get("adaptive", True)
    if not isinstance(adaptive, bool):
        raise ConfigError(f"attack.adaptive must be True or False, got {adaptive!r}")
    if a.mode == "gradient":
        for d in pipeline.of("server", "observation"):
            raise ConfigError(
                f"defense.name={config.defense.name!r}: {d.name} acts on FedAvg rounds; "
                "use attack.mode='fedavg'"
            )
    spec.bind(a)  # the attack's own settings: unknown keys, types, ranges, cross-checks


def resolved_attack(config) -> dict:
    """The attack's settings as bound (its defaults filled in), for config.json."""
    if config.attack.name == NO_ATTACK:
        return {}
    cfg = attacks.get(config.attack.name).bind(config.attack)
    return {k: getattr(cfg, f.name) for k, f in settings_lib.keys(type(cfg)).items()}


def resolve_rounds(rounds, total: int) -> list[int]:
    """attack.rounds with negative entries counted from the end."""
    return sorted({r % total for r in rounds})
