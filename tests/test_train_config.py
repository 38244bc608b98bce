"""The training config: NeuralHydrology key aliases, one meaning of warm-up, the basin-list file."""

from __future__ import annotations

import json
import logging

import pytest
import yaml

from bmi_dhydro.train import (NEURALHYDROLOGY_KEYS, TrainConfig, _legacy_config_json, load_train_config,
                              load_training_data, read_basins_file)


def load(tmp_path, cfg: dict, name="c.yaml") -> TrainConfig:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return load_train_config(p)[0]


CANONICAL = {
    "data": {"camels_root": "/data/CAMELS_US", "basins_file": "basins.txt"},
    "periods": {"train": ["1999-10-01", "2008-09-30"], "validation": ["1980-10-01", "1989-09-30"],
                "test": ["1989-10-01", "1999-09-30"]},
    "validation": {"every_epochs": 3},
    "model": {"lstm_hidden": 256, "attributes": ["p_mean", "aridity", "elev_mean"]},
    "training": {"batch_basins": 256, "epochs": 30, "learning_rate": 0.001, "grad_clip": 1.0, "seed": 123},
}

NEURALHYDROLOGY = {  # the same settings as NeuralHydrology writes them (its dates are DD/MM/YYYY)
    "data_dir": "/data/CAMELS_US",
    "train_basin_file": "basins.txt",
    "train_start_date": "01/10/1999",
    "train_end_date": "30/09/2008",
    "validation_start_date": "01/10/1980",
    "validation_end_date": "30/09/1989",
    "test_start_date": "01/10/1989",
    "test_end_date": "30/09/1999",
    "validate_every": 3,
    "hidden_size": 256,
    "static_attributes": ["p_mean", "aridity", "elev_mean"],
    "batch_size": 256,
    "epochs": 30,
    "learning_rate": 0.001,
    "clip_gradient_norm": 1.0,
    "seed": 123,
}


def test_neuralhydrology_keys_equal_the_canonical_config(tmp_path):
    assert set(NEURALHYDROLOGY) >= set(NEURALHYDROLOGY_KEYS)  # every alias is exercised
    canonical = load(tmp_path, CANONICAL, "a.yaml")
    aliased = load(tmp_path, NEURALHYDROLOGY, "b.yaml")
    assert aliased == canonical
    assert aliased.model_dump() == canonical.model_dump()  # dumped (checkpoints, resume) under this project's names
    # mixed: some settings under NeuralHydrology's names, the rest in sections
    mixed = {"hidden_size": 256, "train_start_date": "1999-10-01", "train_end_date": "2008-09-30",
             **{k: v for k, v in CANONICAL.items() if k not in ("periods",)}}
    mixed["model"] = {"attributes": ["p_mean", "aridity", "elev_mean"]}
    mixed["periods"] = {"validation": CANONICAL["periods"]["validation"], "test": CANONICAL["periods"]["test"]}
    assert load(tmp_path, mixed, "c.yaml") == canonical


@pytest.mark.parametrize("nh, section, key, value", [
    ("hidden_size", "model", "lstm_hidden", 64),
    ("batch_size", "training", "batch_basins", 8),
    ("seed", "training", "seed", 1),
    ("train_basin_file", "data", "basins_file", "b.txt"),
])
def test_a_setting_under_both_names_is_an_error(tmp_path, nh, section, key, value):
    with pytest.raises(ValueError) as err:
        load(tmp_path, {nh: value, section: {key: value}})
    assert nh in str(err.value) and f"{section}.{key}" in str(err.value)


def test_period_under_both_names_and_half_a_period_are_errors(tmp_path):
    with pytest.raises(ValueError, match=r"train_start_date/train_end_date .* and periods\.train"):
        load(tmp_path, {"train_start_date": "01/10/1999", "train_end_date": "30/09/2008",
                        "periods": {"train": ["1999-10-01", "2008-09-30"]}})
    with pytest.raises(ValueError, match=r"test_start_date .* needs test_end_date"):
        load(tmp_path, {"test_start_date": "01/10/1989"})
    with pytest.raises(ValueError, match=r"train_end_date: expected one date"):
        load(tmp_path, {"train_start_date": "01/10/1999", "train_end_date": ["30/09/2008", "30/09/2009"]})
    with pytest.raises(ValueError, match=r"train_start_date: expected one date .* got '31/02/1999'"):
        load(tmp_path, {"train_start_date": "31/02/1999", "train_end_date": "30/09/2008"})


def test_unknown_keys_are_still_errors(tmp_path):
    with pytest.raises(ValueError, match="epochz"):
        load(tmp_path, {"epochz": 3})
    with pytest.raises(ValueError, match="hidden_sise"):
        load(tmp_path, {"model": {"hidden_sise": 3}})
    with pytest.raises(ValueError, match="hidden_size"):  # an alias works at the top level only
        load(tmp_path, {"model": {"hidden_size": 3}})


def test_neuralhydrology_keys_that_differ_here_are_refused_with_the_equivalent(tmp_path):
    with pytest.raises(ValueError, match=r"seq_length .*window_warmup_days .*window_days"):
        load(tmp_path, {"seq_length": 365})
    with pytest.raises(ValueError, match=r"predict_last_n .*training\.window_days"):
        load(tmp_path, {"predict_last_n": 1})
    with pytest.raises(ValueError, match=r"model: 'cudalstm' looks like NeuralHydrology's model name"):
        load(tmp_path, {"model": "cudalstm"})
    with pytest.raises(ValueError, match=r"learning_rate: a NeuralHydrology schedule"):
        load(tmp_path, {"learning_rate": {0: 1e-3, 10: 5e-4}})


def test_one_warmup_meaning_and_the_old_training_key(tmp_path, caplog):
    """periods.warmup_days: spin-up before evaluated periods; training.window_warmup_days: before each training
    window.  The old training.warmup_days is read as window_warmup_days with a deprecation warning."""
    new = load(tmp_path, {"periods": {"warmup_days": 30}, "training": {"window_warmup_days": 10}}, "a.yaml")
    assert (new.periods.warmup_days, new.training.window_warmup_days) == (30, 10)
    with caplog.at_level(logging.WARNING, logger="dhydro.train"):
        old = load(tmp_path, {"periods": {"warmup_days": 30}, "training": {"warmup_days": 10}}, "b.yaml")
    assert old == new
    assert any("training.warmup_days is deprecated" in r.getMessage() and "window_warmup_days" in r.getMessage()
               for r in caplog.records)
    with pytest.raises(ValueError, match=r"training\.warmup_days .*training\.window_warmup_days"):
        load(tmp_path, {"training": {"warmup_days": 10, "window_warmup_days": 10}}, "c.yaml")
    # a training state written under the old name still resumes (its config JSON is recognised)
    dump = new.model_dump(mode="json")
    old_json = json.loads(json.dumps(dump))
    old_json["training"]["warmup_days"] = old_json["training"].pop("window_warmup_days")
    assert _legacy_config_json(dump) == json.dumps(old_json, sort_keys=True)


def test_basin_list_file(tmp_path):
    f = tmp_path / "basins.txt"
    f.write_text("# training basins\n01022500\n\n  09035900   # comment after the id\n\t# indented comment\n06221400\n")
    assert read_basins_file(f) == ["01022500", "09035900", "06221400"]
    cfg = load(tmp_path, {"data": {"basins_file": "basins.txt"}, "periods": {"train": ["2001-10-01", "2002-09-30"]}})
    ds = load_training_data(cfg, tmp_path)  # the bundled CAMELS subset
    assert [str(b) for b in ds.basin.values] == ["01022500", "09035900", "06221400"]
    # NeuralHydrology's key for the same file
    assert load(tmp_path, {"train_basin_file": "basins.txt"}, "nh.yaml").data.basins_file == "basins.txt"


def test_basin_list_file_errors_name_the_file(tmp_path):
    f = tmp_path / "basins.txt"
    f.write_text("01022500\n99999999\n")
    cfg = load(tmp_path, {"data": {"basins_file": "basins.txt"}, "periods": {"train": ["2001-10-01", "2002-09-30"]}})
    with pytest.raises(FileNotFoundError) as err:
        load_training_data(cfg, tmp_path)
    assert "99999999" in str(err.value) and str(f) in str(err.value)
    f.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match=rf"{f}: no basin ids"):
        read_basins_file(f)
    f.write_text("01022500\n09035900\n01022500\n")
    with pytest.raises(ValueError, match=r"listed more than once: \['01022500'\]"):
        read_basins_file(f)
    with pytest.raises(FileNotFoundError, match=r"data.basins_file: file not found: .*missing.txt"):
        load_training_data(load(tmp_path, {"data": {"basins_file": "missing.txt"}}, "m.yaml"), tmp_path)


def test_the_shipped_training_configs_load_and_name_their_basins_but_no_data_path():
    """Users never have the developers' data folder: the shipped configs leave the data to --data and list their
    515 basins in a file inside the repository."""
    from pathlib import Path

    from bmi_dhydro.train import _resolve

    repo = Path(__file__).resolve().parents[1]
    root = repo / "examples" / "train"
    paths = [root / "camels515_daymet.yaml", *sorted((root / "precision_ab").glob("*.yaml"))]
    assert len(paths) == 3
    for path in paths:
        cfg, base = load_train_config(path)
        assert cfg.data.camels_root is None, path
        # every input path the config names lies inside the repository
        for p in (cfg.data.basins_file, cfg.data.attributes_root):
            if p is not None:
                assert _resolve(base, p).resolve().is_relative_to(repo), (path, p)
        basins = read_basins_file(_resolve(base, cfg.data.basins_file))
        assert len(basins) == len(set(basins)) == 515, path
