"""Checkpoints: self-describing, weights_only loading, clear rejection of anything wrong."""

import pytest
import torch

from bmi_dhydro.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from bmi_dhydro.model import DeltaModel, ModelConfig


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    m = DeltaModel(ModelConfig(attributes=["x", "y"], attribute_units=["m", "1"], nmul=2, lstm_hidden=4, mlp_hidden=8))
    m.provider.set_normalization(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 4.0]), torch.zeros(3), torch.ones(3))
    p = save_checkpoint(m, tmp_path / "m.pt", {"data": "unit test", "metrics": {"nse": 0.5}})
    return m, p


def test_roundtrip(saved):
    m, p = saved
    m2, payload = load_checkpoint(p)
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    assert payload["variables"]["attributes"] == [["x", "m"], ["y", "1"]]
    assert payload["provenance"]["metrics"]["nse"] == 0.5
    assert float(m2.provider.attr_std[1]) == 4.0  # normalisation statistics travel in the file


def test_corrupt_file_is_rejected(saved, tmp_path):
    _, p = saved
    bad = tmp_path / "bad.pt"
    bad.write_bytes(p.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(bad)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_unknown_version_and_format(saved, tmp_path):
    _, p = saved
    payload = torch.load(p, weights_only=True)
    payload["version"] = 99
    torch.save(payload, tmp_path / "v99.pt")
    with pytest.raises(CheckpointError, match="unsupported format version 99"):
        load_checkpoint(tmp_path / "v99.pt")
    payload["version"] = 1
    payload["format"] = "something-else"
    torch.save(payload, tmp_path / "fmt.pt")
    with pytest.raises(CheckpointError, match="expected format"):
        load_checkpoint(tmp_path / "fmt.pt")


def test_missing_and_unexpected_keys_are_named(saved, tmp_path):
    _, p = saved
    payload = torch.load(p, weights_only=True)
    sd = dict(payload["state_dict"])
    sd.pop("provider.lstm_head.bias")
    sd["provider.extra"] = torch.zeros(1)
    payload["state_dict"] = sd
    torch.save(payload, tmp_path / "keys.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['provider.lstm_head.bias'\], unexpected keys \['provider.extra'\]"):
        load_checkpoint(tmp_path / "keys.pt")
    payload = torch.load(p, weights_only=True)
    del payload["provenance"]
    payload["surprise"] = 1
    torch.save(payload, tmp_path / "top.pt")
    with pytest.raises(CheckpointError, match=r"missing keys \['provenance'\], unexpected keys \['surprise'\]"):
        read_checkpoint(tmp_path / "top.pt")


def test_bad_config_and_shape_mismatch(saved, tmp_path):
    _, p = saved
    payload = torch.load(p, weights_only=True)
    payload["config"]["bogus_key"] = 1
    torch.save(payload, tmp_path / "cfg.pt")
    with pytest.raises(CheckpointError, match="bogus_key"):
        load_checkpoint(tmp_path / "cfg.pt")
    payload = torch.load(p, weights_only=True)
    payload["config"]["lstm_hidden"] = 5
    torch.save(payload, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "shape.pt")


def test_pickled_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"format": "bmi-dhydro-checkpoint", "version": 1, "x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "evil.pt")


def test_save_is_atomic(saved, tmp_path):
    m, p = saved
    before = p.read_bytes()
    with pytest.raises(CheckpointError):
        save_checkpoint(_fixed(), p)  # refused: fixed models have no network
    assert p.read_bytes() == before


def _fixed():
    from bmi_dhydro import physics

    return DeltaModel.fixed({k: sum(physics.PARAM_BOUNDS[k]) / 2 for k in physics.VARIANT_PARAMS["hbv1.0"]}, routing=False)
