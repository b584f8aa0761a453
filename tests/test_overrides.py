"""One schema for every group: `leakjax.overrides` binds ``--config.GROUP.KEY=VALUE`` by the
field's type (the base schema, the chosen attack's settings, the chained defenses', the
model's options), and `leakjax.config.check_keys` refuses a config file's unknown key in
every group alike."""

from __future__ import annotations

import pytest

from leakjax import config as config_lib
from leakjax import overrides
from leakjax.types import ConfigError


def _base(**groups):
    c = config_lib.base_config()
    with c.unlocked():
        for group, values in groups.items():
            for k, v in values.items():
                c[group][k] = v
    return c


def test_split_takes_both_forms_and_keeps_the_other_flags():
    rest, pairs = overrides.split(
        ["prog", "--config=x.py", "--config.fl.lr=0.5", "--config.attack.name", "dlf", "--debug"]
    )
    assert rest == ["prog", "--config=x.py", "--debug"]
    assert pairs == [("fl.lr", "0.5"), ("attack.name", "dlf")]
    for argv in (["--config.fl.lr"], ["--config.fl.lr", "--debug"]):
        with pytest.raises(ConfigError, match=r"--config.fl.lr needs a value"):
            overrides.split(argv)


def test_base_fields_are_parsed_by_their_type():
    c, notes = overrides.apply(
        _base(),
        [
            ("fl.lr", "1"),
            ("attack.rounds", "(0, 1)"),
            ("output.progress", "false"),
            ("data.name", "mnist"),
            ("seed", "3"),
            ("attack.clients", "-1"),
        ],
    )
    assert isinstance(c.fl.lr, float) and c.fl.lr == 1.0  # an int given to a float field
    assert c.attack.rounds == (0, 1) and c.output.progress is False
    assert c.data.name == "mnist" and c.seed == 3 and c.attack.clients == -1 and notes == []
    assert overrides.apply(_base(), [("attack.rounds", "-1")])[0].attack.rounds == (-1,)
    for pair, msg in [
        (("fl.num_clients", "abc"), r"^fl.num_clients must be an integer, got 'abc'$"),
        (("data.max_test", "2.5"), r"^data.max_test must be an integer, got 2.5$"),
        (("fl.lr", "nan"), r"^fl.lr must be a finite number"),
        (("fl.lrr", "0.1"), r"^fl.lrr is not a config setting; did you mean fl.lr\?"),
        (("fl", "3"), r"^fl is a group of settings"),
        (("fl.lr.x", "3"), r"^fl.lr.x is not a config setting"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            overrides.apply(_base(), [pair])


def test_the_input_config_is_not_changed():
    c = _base()
    overrides.apply(c, [("fl.lr", "0.5"), ("attack.name", "dlf"), ("attack.reorder", "2")])
    assert c.fl.lr == 0.1 and c.attack.name == "ig" and "reorder" not in c.attack


def test_attack_settings_are_fields_of_the_chosen_attack_in_any_order():
    c, _ = overrides.apply(_base(), [("attack.reorder", "2"), ("attack.name", "dlf")])
    assert c.attack.name == "dlf" and c.attack.reorder == 2
    config_lib.validate(c)  # the bound group passes the one validator
    with pytest.raises(ConfigError, match=r"^attack.reordr is not a setting of dlf; did you mean"):
        overrides.apply(_base(), [("attack.name", "dlf"), ("attack.reordr", "2")])
    with pytest.raises(ConfigError, match=r"^attack.tv is set but attack.name='none'"):
        overrides.apply(_base(), [("attack.name", "none"), ("attack.tv", "0.1")])


def test_a_new_attack_drops_the_files_settings_of_the_other_with_a_note():
    c, notes = overrides.apply(_base(attack={"tv": 0.5}), [("attack.name", "dlg")])
    assert "tv" not in c.attack
    assert notes == [
        "leakjax: note: attack.name='dlg' overrides the file's 'ig'; its settings attack.tv "
        "are not applied"
    ]
    same, notes = overrides.apply(_base(attack={"tv": 0.5}), [("attack.name", "ig")])
    assert same.attack.tv == 0.5 and notes == []


def test_defense_settings_bind_by_the_chained_defenses_type():
    c, _ = overrides.apply(
        _base(),
        [("defense.clip", "1"), ("defense.name", "dp_sgd"), ("defense.noise_multiplier", "2")],
    )
    assert c.defense.name == "dp_sgd" and c.defense.noise_multiplier == 2.0
    with pytest.raises(ConfigError, match=r"^defense.noise_multiplier must be a finite number"):
        overrides.apply(_base(), [("defense.name", "dp_sgd"), ("defense.noise_multiplier", "nan")])
    with pytest.raises(ConfigError, match=r"^defense.clipp is not a setting of the chained"):
        overrides.apply(_base(), [("defense.name", "dp_sgd"), ("defense.clipp", "1")])


def test_model_options_are_model_settings_from_a_file_or_a_flag():
    c, _ = overrides.apply(_base(), [("model.head", "cpa"), ("model.name", "vgg16")])
    assert c.model.name == "vgg16" and c.model.head == "cpa"
    config_lib.check_keys(c)
    c, _ = overrides.apply(_base(), [("model.batch_norm", "true"), ("model.name", "vgg16")])
    assert c.model.batch_norm is True
    # a file's cnn option is a schema field of cnn, not of vgg16
    config_lib.check_keys(_base(model={"variant": "mnist"}))
    with pytest.raises(ConfigError, match=r"^model.head is not a config setting.*variant\)$"):
        config_lib.check_keys(_base(model={"head": "cpa"}))
    with pytest.raises(ConfigError, match=r"^model.head is not a config setting"):
        overrides.apply(_base(), [("model.head", "cpa")])
    c, notes = overrides.apply(_base(model={"variant": "mnist"}), [("model.name", "vgg16")])
    assert "variant" not in c.model and "model.variant are not applied" in notes[0]


def test_a_model_option_reaches_the_model(monkeypatch):
    """``model.variant`` set in a config builds that variant (the option is not dropped)."""
    from leakjax import experiment, models

    seen = {}
    real = models.get

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "get", spy)
    c = _base(
        data={"name": "digits", "max_train": 60, "max_test": 10},
        fl={"num_clients": 2, "rounds": 1, "batch_size": 10, "local_epochs": 1},
        model={"variant": "mnist"},
        attack={"steps": 1},
    )
    experiment.prepare(c)
    assert seen["variant"] == "mnist"
