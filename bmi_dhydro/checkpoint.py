"""Self-describing checkpoints.

One file (``torch.save`` of a plain dict, loadable with ``torch.load(weights_only=True)``) holding::

    format        "bmi-dhydro-checkpoint"
    version       FORMAT_VERSION (int)
    config        ModelConfig as a dict (variant, nmul, dt_days, dynamic params, network sizes, attribute and
                  forcing names/units, PET method)
    state_dict    network weights and normalisation statistics (buffers attr_mean/attr_std/forc_mean/forc_std)
    variables     {"attributes": [[name, unit], ...], "forcings": [[name, unit], ...]}
    provenance    free-form dict: training data, periods, metrics, code version, parent checkpoint ...

Loading refuses unknown formats/versions and names missing or unexpected keys.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from importlib import resources
from pathlib import Path

import torch
from pydantic import ValidationError

from .model import DeltaModel, ModelConfig

FORMAT = "bmi-dhydro-checkpoint"
FORMAT_VERSION = 1
TOP_KEYS = {"format", "version", "config", "state_dict", "variables", "provenance"}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, with the reason."""


def default_checkpoint_path() -> Path:
    """The bundled default model (package data)."""
    return Path(str(resources.files("bmi_dhydro") / "resources" / "default_model.pt"))


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plain(obj):
    """Provenance as plain JSON types (numpy scalars and arrays would not load with weights_only=True)."""
    import json

    def default(o):
        if hasattr(o, "tolist"):
            return o.tolist()
        if hasattr(o, "item"):
            return o.item()
        return str(o)

    return json.loads(json.dumps(obj, default=default, allow_nan=True))


def save_checkpoint(model: DeltaModel, path, provenance: dict | None = None) -> Path:
    """Write ``model`` atomically (temporary file + rename), so an existing file is never left half-written."""
    if model.is_fixed:
        raise CheckpointError("save_checkpoint: fixed-parameter models have no network to save")
    cfg = model.config
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "config": cfg.model_dump(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "variables": {
            "attributes": [[n, u] for n, u in zip(cfg.attributes, cfg.attribute_units or [""] * len(cfg.attributes))],
            "forcings": [[n, u] for n, u in zip(cfg.forcings, cfg.forcing_units)],
        },
        "provenance": plain(provenance or {}),
    }
    return atomic_torch_save(payload, path)


def atomic_torch_save(obj, path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename: an existing file is never left half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def read_checkpoint(path) -> dict:
    """Load and validate the raw payload (no model built)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint: file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated or not a torch file, or unsafe pickle
        raise CheckpointError(f"checkpoint {path}: cannot be read as a bmi-dhydro checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict payload, got {type(payload).__name__}")
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path}: expected format {FORMAT!r}, got {payload.get('format')!r}")
    if payload.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path}: unsupported format version {payload.get('version')!r}; this bmi-dhydro reads version {FORMAT_VERSION}"
        )
    missing = sorted(TOP_KEYS - set(payload))
    unexpected = sorted(set(payload) - TOP_KEYS)
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {path}: missing keys {missing}, unexpected keys {unexpected}")
    return payload


def model_from_payload(payload: dict, source: str = "checkpoint") -> DeltaModel:
    try:
        cfg = ModelConfig.model_validate(payload["config"])
    except ValidationError as exc:
        raise CheckpointError(f"{source}: invalid model config: {exc}") from exc
    model = DeltaModel(cfg)
    float_dtypes = {v.dtype for v in payload["state_dict"].values() if torch.is_tensor(v) and v.is_floating_point()}
    if len(float_dtypes) == 1:
        model = model.to(float_dtypes.pop())  # load the weights at the precision they were saved in
    for k, v in payload["state_dict"].items():  # NaN weights would give NaN runoff, silently
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            n_bad = int((~torch.isfinite(v)).sum())
            raise CheckpointError(f"{source}: weight {k!r} holds {n_bad} non-finite value(s) (NaN or inf) of {v.numel()}; "
                                  "the checkpoint is corrupt or comes from a diverged training run")
    expected = set(model.state_dict())
    got = set(payload["state_dict"])
    missing, unexpected = sorted(expected - got), sorted(got - expected)
    if missing or unexpected:
        raise CheckpointError(f"{source}: state_dict missing keys {missing}, unexpected keys {unexpected}")
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:  # shape mismatch
        raise CheckpointError(f"{source}: weights do not fit the config: {exc}") from exc
    model.eval()
    return model


def load_checkpoint(path=None, dtype=torch.float32) -> tuple[DeltaModel, dict]:
    """Load a checkpoint (the bundled default when ``path`` is None).  Returns ``(model, payload)``."""
    path = Path(path) if path is not None else default_checkpoint_path()
    payload = read_checkpoint(path)
    model = model_from_payload(payload, source=f"checkpoint {path}").to(dtype)
    return model, payload


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()


def shared_model(path=None, dtype=torch.float64) -> tuple[DeltaModel, dict]:
    """One loaded network per (resolved path, file hash, dtype) in a process: ngen makes an instance per catchment.

    The model is used only for inference by BMI instances (no state lives in it), so sharing is safe.
    """
    p = Path(path).resolve() if path is not None else default_checkpoint_path().resolve()
    st = p.stat() if p.exists() else None
    key = (str(p), st.st_mtime_ns if st else None, st.st_size if st else None, dtype)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = load_checkpoint(p, dtype=dtype)
        return _SHARED[key]
