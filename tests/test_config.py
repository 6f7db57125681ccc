"""Config tree: YAML + overrides, and errors that name the key and the file."""

import pytest
import yaml

from ssps.config import Config, ConfigError, load_config, save_config
from ssps.config_loader import describe


def write(tmp_path, data, name="c.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_yaml_and_overrides_reach_the_tree(tmp_path):
    path = write(
        tmp_path, {"method": {"name": "dino", "dino": {"out_dim": 1024}}, "trainer": {"lr": 0.2}}
    )
    cfg = load_config(path, ["trainer.epochs=3", "encoder.channels=[64,64,64,64,192]"])
    assert cfg.method.name == "dino" and cfg.method.dino.out_dim == 1024
    assert cfg.trainer.lr == 0.2 and cfg.trainer.epochs == 3
    assert cfg.encoder.channels == [64, 64, 64, 64, 192]
    assert cfg.run_dir == "runs/c"
    assert cfg.method.dino.teacher_temperature == 0.04  # untouched defaults survive


def test_int_is_accepted_for_float_but_not_the_reverse(tmp_path):
    cfg = load_config(write(tmp_path, {"trainer": {"lr": 1}}))
    assert cfg.trainer.lr == 1.0 and isinstance(cfg.trainer.lr, float)
    with pytest.raises(ConfigError, match=r"'trainer.epochs' must be of type int"):
        load_config(write(tmp_path, {"trainer": {"epochs": 2.5}}))


def test_exponent_notation_is_a_float(tmp_path):
    # PyYAML reads 5e-5 as the string '5e-5'; a float field must still take it
    path = write(tmp_path, {"trainer": {"min_lr": "1E-6"}})
    cfg = load_config(path, ["trainer.weight_decay=5e-5"])
    assert cfg.trainer.weight_decay == 5e-5 and cfg.trainer.min_lr == 1e-6
    with pytest.raises(ConfigError, match=r"'trainer.lr' must be of type float"):
        load_config(None, ["trainer.lr=5e"])
    with pytest.raises(ConfigError, match=r"'trainer.epochs' must be of type int"):
        load_config(None, ["trainer.epochs=1e3"])  # an int field does not take it


@pytest.mark.parametrize(
    "data, pattern",
    [
        ({"trainer": {"epoch": 3}}, r"unknown key 'trainer.epoch'"),
        ({"method": {"name": "byol"}}, r"'method.name' must be one of"),
        ({"trainer": {"deterministic": "yes"}}, r"'trainer.deterministic' must be of type bool"),
        ({"data": {"batch_size": 0}}, r"'data.batch_size' must be >= 1"),
        ({"encoder": {"options": {"bogus": 1}}}, r"encoder.options.bogus"),
        ({"trainer": 3}, r"'trainer' must be a mapping"),
    ],
)
def test_bad_values_fail_naming_key_and_file(tmp_path, data, pattern):
    path = write(tmp_path, data)
    with pytest.raises(ConfigError, match=pattern) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_bad_override_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"override 'trainer.optimizer=lamb'"):
        load_config(None, ["trainer.optimizer=lamb"])
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["trainer.epochs"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["trainer.epochs=7", "method.name=supervised"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    again.run_dir = cfg.run_dir
    assert again == cfg


def test_every_field_is_documented():
    lines = describe(Config)
    assert len(lines) > 60
    assert all("#" in line and not line.endswith("# ") for line in lines)
