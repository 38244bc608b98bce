"""State in and out of a :class:`~bmi_dhydro.bmi.BmiDeltaModel`: NetCDF restarts, the ngen serialization
payload, and the spin-up from a forcing file.

Every function takes the BMI instance ``bmi`` and works through its stepper (``bmi.stepper.state_arrays()`` /
``load_state_arrays``: stores, LSTM state, routing buffer, accumulators, clock), its units and its clock; a
continued run equals an unbroken one bit for bit.

A restart (file or payload) records what it belongs to: the units, the framework time step, the start date of the
run (the clock counts from it; another start would shift the PET day of year) and the model's identity (the
checkpoint's sha256, or the fixed-parameter structure).  Loading checks all four, and that every state value is
finite and within its bounds (:func:`bmi_dhydro.bmi_vars.check_state_arrays`), before any state changes.  The
ngen payload carries a sha256 checksum of its contents.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from .bmi_vars import PET, SER_CREATE, SER_FREE, SER_SIZE, SER_STATE, check_state_arrays
from .forcing import ForcingTimeError, check_time_axis, read_forcing_for_units

SER_MAGIC = b"BMIDHYDRO-STATE2"  # payload header: format drift or foreign bytes fail fast on restore
SER_DIGEST = 32  # the sha256 of the rest of the payload follows the header
MODEL_STATE_KEYS = ("hbv_snowpack", "hbv_meltwater", "hbv_sm", "hbv_suz", "hbv_slz", "lstm_h", "lstm_c", "route_buffer")


# -- what a restart belongs to ---------------------------------------------------------------------------------------
def model_identity(bmi) -> str:
    """The model a state belongs to: the checkpoint's sha256 (network mode) or the fixed-parameter structure."""
    ident = getattr(bmi, "_model_identity", None)
    if ident is None:
        m = bmi.model
        c = m.config
        if m.is_fixed:
            ident = (f"fixed parameters: {c.variant}, routing {c.routing}, pet {c.pet_method}, nmul {c.nmul}, "
                     f"dt {c.dt_days:g} d")
        else:
            from .checkpoint import default_checkpoint_path, file_sha256

            path = getattr(bmi, "checkpoint_path", None) or default_checkpoint_path()
            ident = f"checkpoint sha256 {file_sha256(path)}"
        bmi._model_identity = ident
    return ident


def run_start(bmi) -> str:
    return f"{bmi._cfg.time.start.replace(tzinfo=None):%Y-%m-%d %H:%M:%S}"


def check_belongs(bmi, source: str, ids, dt, start, identity) -> None:
    """A restart's units, time step, start date and model against this instance's (None: not recorded)."""
    mine = list(bmi.units.ids)
    if [str(i) for i in ids] != mine:
        raise ValueError(f"{source}: the restart holds units {[str(i) for i in ids][:5]}, this instance runs {mine[:5]}")
    if dt is not None and float(dt) != bmi.get_time_step():
        raise ValueError(f"{source}: the restart's time step {float(dt):g} s differs from this instance's "
                         f"{bmi.get_time_step():g} s (time.time_step)")
    if start is not None:
        import pandas as pd

        if pd.Timestamp(str(start)) != pd.Timestamp(run_start(bmi)):
            raise ValueError(f"{source}: the restart belongs to a run that starts at {start}, this instance starts at "
                             f"{run_start(bmi)} (time.start); its clock would put every later step on another date "
                             "(the PET day of year would shift)")
    if identity is not None and str(identity) != model_identity(bmi):
        raise ValueError(f"{source}: the restart was made by another model ({identity}); this instance runs "
                         f"{model_identity(bmi)}")


# -- NetCDF restart files -------------------------------------------------------------------------------------------
def save_state(bmi, path) -> Path:
    """Write a NetCDF restart file (stores, routing buffer, LSTM state, accumulators, time), atomically."""
    import xarray as xr

    from .safe_io import atomic_write

    arrays = bmi.stepper.state_arrays()
    # a restart is the model's own binary-like state, not a CF dataset: it claims no Conventions
    ds = xr.Dataset(attrs={"title": "bmi-dhydro restart (model state; not a CF dataset)", "current_time_s": bmi.get_current_time(),
                           "time_step_s": bmi.get_time_step(), "start": run_start(bmi),
                           "model_identity": model_identity(bmi)})
    for k, a in arrays.items():
        dims = ("unit",) + tuple(f"{k}_d{i}" for i in range(1, a.ndim)) if k != "counters" else ("counter",)
        ds[k] = (dims, a)
    ds["unit_id"] = ("unit", np.array(bmi.units.ids, dtype=object))
    return atomic_write(path, ds.to_netcdf, "save_state")


def load_state(bmi, path) -> None:
    """Read a restart written by :func:`save_state` into the stepper (same units, time step, start date and model,
    finite values within bounds; or an error naming the file, and the state is unchanged)."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_state: restart file not found: {path}")
    src = f"load_state {path}"
    try:
        ds = xr.open_dataset(path)
    except Exception as exc:  # truncated, corrupt, or not NetCDF at all (xarray's backend guessing)
        raise ValueError(f"{src}: cannot read the file as a bmi-dhydro NetCDF restart (truncated, corrupt or another "
                         f"format): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    with ds:
        if "unit_id" not in ds.variables:
            raise ValueError(f"{src}: not a bmi-dhydro restart (no unit_id variable; it has {sorted(map(str, ds.variables))[:8]})")
        try:
            saved = [str(i) for i in ds["unit_id"].values]
            check_belongs(bmi, src, saved, ds.attrs.get("time_step_s"), ds.attrs.get("start"), ds.attrs.get("model_identity"))
            arrays = {k: ds[k].values for k in ds.data_vars if k != "unit_id"}
        except ValueError:
            raise
        except Exception as exc:  # a truncated file can open and fail on reading the data
            raise ValueError(f"{src}: cannot read the restart's data (truncated or corrupt): {type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
    load_arrays(bmi, arrays, src)


def load_arrays(bmi, arrays: dict, source: str) -> None:
    """Check state arrays (values, completeness) and load them into the stepper, or raise naming ``source``."""
    missing = [k for k in bmi.stepper.state_arrays() if k not in arrays]
    if missing:
        hint = (" (acc_pet_used, dyn_* and sofar_* belong to stepping: hourly or day_so_far: the restart was written "
                "with another stepping)") if any(m == "acc_pet_used" or m.startswith(("dyn_", "sofar_"))
                                                  for m in missing) else ""
        raise ValueError(f"{source}: the restart lacks the state variable(s) {missing}{hint}")
    check_state_arrays(arrays, source)
    try:
        bmi.stepper.load_state_arrays(arrays)
    except KeyError as exc:
        raise ValueError(f"{source}: the restart lacks the state variable {exc}") from None
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


# -- ngen serialization protocol ------------------------------------------------------------------------------------
def set_serialization(bmi, name: str, src) -> None:
    """ngen serialization protocol v0.2 (NOAA-OWP/ngen doc/BMI_SERIALIZATION_PROTOCOL.md).

    save:    set create (trigger) -> get size -> get state -> set free (trigger)
    restore: set size (announce n bytes; the state buffer becomes n zero bytes, so ngen's Python adapter,
             which sizes the array it hands over by get_var_nbytes, passes the whole payload) -> set state
    create and free never touch the model state; a failed restore leaves the model state unchanged.

    After a restore the BMI clock restarts: ``get_current_time()`` is 0 and counts the steps taken since (see
    :func:`restart_clock`); the model's own calendar (PET day of year, daily aggregation) continues from the
    restored state.
    """
    if name == SER_CREATE:
        set_ser_buffer(bmi._buf, serialize(bmi))
    elif name == SER_FREE:
        set_ser_buffer(bmi._buf, np.zeros(0, dtype="uint8"))
    elif name == SER_SIZE:
        set_ser_buffer(bmi._buf, np.zeros(announced_size(src), dtype="uint8"))
    else:  # SER_STATE: deliver a payload
        data = delivered_bytes(src, bmi._buf[SER_STATE].size)
        deserialize(bmi, data)
        bmi.end_gradient_window()  # the window's start state is no longer the run's
        bmi._refresh_outputs()
        set_ser_buffer(bmi._buf, data.copy())
        restart_clock(bmi)


def restart_clock(bmi) -> None:
    """The BMI clock after an ngen serialization restore: 0 at the restored state, then the time since.

    ngen (NOAA-OWP/ngen PR #957) restores a model once, right after creating it, and then runs its own time loop from
    the realization's ``start_time``; it fetches the forcing of each step at ``start_time + (get_current_time() -
    get_start_time())``, with ``get_start_time()`` read before the restore.  A resumed run's realization starts at the
    time of the saved state, so the clock must read 0 there, as for a fresh model: reporting the restored clock would
    fetch every record that much later, past the window (ngen's CSV provider then repeats its last record).  The
    stepper keeps its own step count, so the calendar and the state continue exactly (``get_current_time()`` is
    ``(steps taken - steps taken at the restore) x time step``).
    """
    bmi._clock_origin = bmi.stepper.fw_step


def set_ser_buffer(buf: dict, data: np.ndarray) -> None:
    """The one place the serialization buffer changes: ``ngen::serialization_size`` always equals its length."""
    buf[SER_STATE] = data
    buf[SER_SIZE][0] = data.size


def serialize(bmi) -> np.ndarray:
    """The state payload (uint8): a magic header, the sha256 of the rest, then an ``.npz`` of the state arrays, the
    unit ids and what the state belongs to (time step, start date, model identity)."""
    buf = io.BytesIO()
    arrays = bmi.stepper.state_arrays()
    arrays["unit_id"] = np.array(bmi.units.ids, dtype="U")
    arrays["meta_time_step_s"] = np.array(bmi.get_time_step())
    arrays["meta_start"] = np.array(run_start(bmi))
    arrays["meta_model"] = np.array(model_identity(bmi))
    np.savez(buf, **arrays)
    body = buf.getvalue()
    return np.frombuffer(SER_MAGIC + hashlib.sha256(body).digest() + body, dtype="uint8").copy()


def deserialize(bmi, data: np.ndarray) -> None:
    """Load a payload from :func:`serialize`; a foreign, corrupt, truncated or mismatched payload raises before any
    state changes."""
    raw = np.ascontiguousarray(data).view("uint8").tobytes()
    magic = SER_MAGIC
    if raw[: len(magic)] != magic:
        raise ValueError(f"{SER_STATE}: expected a bmi-dhydro state payload (starting with {magic!r}), "
                         f"got {len(raw)} bytes starting with {raw[:len(magic)]!r}")
    digest, body = raw[len(magic): len(magic) + SER_DIGEST], raw[len(magic) + SER_DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise ValueError(f"{SER_STATE}: the {len(raw)}-byte state payload fails its sha256 checksum (truncated or "
                         "corrupted on the way); the state was not changed")
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # corrupt payload
        raise ValueError(f"{SER_STATE}: cannot read the {len(raw)}-byte state payload ({type(exc).__name__}: {exc})") from exc
    ids = [str(i) for i in arrays.pop("unit_id", [])]
    meta = {k: arrays.pop(k).item() if k in arrays else None for k in ("meta_time_step_s", "meta_start", "meta_model")}
    check_belongs(bmi, SER_STATE, ids, meta["meta_time_step_s"], meta["meta_start"], meta["meta_model"])
    load_arrays(bmi, arrays, SER_STATE)


def announced_size(src) -> int:
    """The byte count a host announces through ``ngen::serialization_size`` before delivering a payload."""
    n = np.asarray(src)
    if n.size != 1 or n.dtype.kind not in "iu" or int(n.reshape(-1)[0]) < 0:
        raise ValueError(f"set_value({SER_SIZE!r}): expected one non-negative integer byte count, "
                         f"got {n.reshape(-1)[:3].tolist()} ({n.size} value(s) of dtype {n.dtype})")
    return int(n.reshape(-1)[0])


def delivered_bytes(src, announced: int) -> np.ndarray:
    """The payload a host delivers through ``ngen::serialization_state``, as uint8, checked against the size it
    announced (0: none announced)."""
    arr = np.ascontiguousarray(np.asarray(src)).reshape(-1)
    if arr.dtype.itemsize != 1 and arr.dtype.kind not in "SV":
        raise TypeError(f"set_value({SER_STATE!r}): expected bytes (uint8), got dtype {arr.dtype}")
    data = arr.view("uint8")
    if announced and data.size != announced:
        raise ValueError(f"set_value({SER_STATE!r}): delivered {data.size} bytes but {SER_SIZE} announced {announced}")
    return data


# -- spin-up --------------------------------------------------------------------------------------------------------
def spinup(bmi, path) -> None:
    """Run the model over a forcing file, then keep its states and restart the clock, the accumulators and the
    mass accounting."""
    times, data = read_forcing_for_units(path, bmi.units.ids)
    dt = bmi.get_time_step()
    if len(times) > 1:
        step = check_time_axis(times, f"warmup.forcing_file {path}")
        if step != dt:
            raise ForcingTimeError(f"warmup.forcing_file {path}: records every {step:g} s ({step / 3600:g} h), but this "
                                   f"configuration steps every {dt:g} s (time.time_step {dt:g}); the spin-up forcing "
                                   "must have the framework step")
    s = bmi.stepper
    if len(times) < s.k or len(times) % s.k:
        model_step = s.k * dt
        raise ForcingTimeError(f"warmup.forcing_file {path}: {len(times)} records of {dt:g} s do not make whole model "
                               f"steps of {model_step:g} s ({s.k} records each); expected a multiple of {s.k} records "
                               f"(at least {s.k}), so that no partial step is dropped")
    # the spin-up runs on its own records' clock: the day of year of the PET (Hamon, Hargreaves) follows the spin-up
    # forcing, whatever period it is (the year before the run, or the run's first year cycled)
    run_start = s.start
    s.start = pd.Timestamp(times[0]).to_pydatetime().replace(tzinfo=None)
    try:
        for t in range(len(times)):
            for name in bmi._inputs:
                if name in data:
                    bmi._buf[name][:] = data[name][t]
            p, t_, sw, pres, tmax, tmin = bmi._checked_inputs()
            s.step(p, t_, sw, pres, bmi._buf[PET], tmax, tmin)
    finally:
        s.start = run_start
    keep = s.state_arrays()
    s.reset_state()
    fresh = s.state_arrays()
    # (hourly, day_so_far: the day's parameters; day_so_far: the stores as reported, which the spin-up's whole days
    # leave equal to the model's stores)
    for key in MODEL_STATE_KEYS + tuple(k for k in keep if k.startswith("dyn_") or k == "sofar_stores"):
        fresh[key] = keep[key]
    s.load_state_arrays(fresh)
    s.model_storage = s._storage_now()
    s.mass_in = s.model_storage.copy()
