"""State in and out of a :class:`~bmi_dhydro.bmi.BmiDeltaModel`: NetCDF restarts, the ngen serialization
payload, and the spin-up from a forcing file.

Every function takes the BMI instance ``bmi`` and works through its stepper (``bmi.stepper.state_arrays()`` /
``load_state_arrays``: stores, LSTM state, routing buffer, accumulators, clock), its units and its clock; a
continued run equals an unbroken one bit for bit.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .bmi_vars import PET, SER_CREATE, SER_FREE, SER_SIZE, SER_STATE
from .forcing import read_forcing_for_units

SER_MAGIC = b"BMIDHYDRO-STATE1"  # payload header: format drift or foreign bytes fail fast on restore
MODEL_STATE_KEYS = ("hbv_snowpack", "hbv_meltwater", "hbv_sm", "hbv_suz", "hbv_slz", "lstm_h", "lstm_c", "route_buffer")


# -- NetCDF restart files -------------------------------------------------------------------------------------------
def save_state(bmi, path) -> Path:
    """Write a NetCDF restart file (stores, routing buffer, LSTM state, accumulators, time)."""
    import xarray as xr

    arrays = bmi.stepper.state_arrays()
    ds = xr.Dataset(attrs={"Conventions": "CF-1.8", "title": "bmi-dhydro restart", "current_time_s": bmi.get_current_time(),
                           "time_step_s": bmi.get_time_step(), "start": str(bmi._cfg.time.start)})
    for k, a in arrays.items():
        dims = ("unit",) + tuple(f"{k}_d{i}" for i in range(1, a.ndim)) if k != "counters" else ("counter",)
        ds[k] = (dims, a)
    ds["unit_id"] = ("unit", np.array(bmi.units.ids, dtype=object))
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    ds.to_netcdf(tmp)
    tmp.replace(path)
    return path


def load_state(bmi, path) -> None:
    """Read a restart written by :func:`save_state` into the stepper (same units and time step, or an error)."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_state: restart file not found: {path}")
    ids, dt = list(bmi.units.ids), bmi.get_time_step()
    with xr.open_dataset(path) as ds:
        saved = [str(i) for i in ds["unit_id"].values]
        if saved != ids:
            raise ValueError(f"load_state {path}: restart holds units {saved[:5]}, this instance runs {ids[:5]}")
        if float(ds.attrs.get("time_step_s", dt)) != dt:
            raise ValueError(f"load_state {path}: restart time step {ds.attrs['time_step_s']} s differs from {dt} s")
        arrays = {k: ds[k].values for k in ds.data_vars if k != "unit_id"}
    bmi.stepper.load_state_arrays(arrays)


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
    """The state payload (uint8): a magic header, then an ``.npz`` of the state arrays and the unit ids."""
    buf = io.BytesIO()
    arrays = bmi.stepper.state_arrays()
    arrays["unit_id"] = np.array(bmi.units.ids, dtype="U")
    np.savez(buf, **arrays)
    return np.frombuffer(SER_MAGIC + buf.getvalue(), dtype="uint8").copy()


def deserialize(bmi, data: np.ndarray) -> None:
    """Load a payload from :func:`serialize`; a foreign, corrupt or mismatched payload raises before any state
    changes."""
    raw = np.ascontiguousarray(data).view("uint8").tobytes()
    magic = SER_MAGIC
    if raw[: len(magic)] != magic:
        raise ValueError(f"{SER_STATE}: expected a bmi-dhydro state payload (starting with {magic!r}), "
                         f"got {len(raw)} bytes starting with {raw[:len(magic)]!r}")
    try:
        with np.load(io.BytesIO(raw[len(magic):]), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # truncated or corrupt payload
        raise ValueError(f"{SER_STATE}: cannot read the {len(raw)}-byte state payload ({type(exc).__name__}: {exc})") from exc
    ids = [str(i) for i in arrays.pop("unit_id", [])]
    if ids != list(bmi.units.ids):
        raise ValueError(f"{SER_STATE}: serialized state is for units {ids[:5]}, this instance runs {bmi.units.ids[:5]}")
    try:
        bmi.stepper.load_state_arrays(arrays)
    except KeyError as exc:
        raise ValueError(f"{SER_STATE}: the payload lacks the state variable {exc}") from None


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
    for t in range(len(times)):
        for name in bmi._inputs:
            if name in data:
                bmi._buf[name][:] = data[name][t]
        p, t_, sw, pres, tmax, tmin = bmi._checked_inputs()
        bmi.stepper.step(p, t_, sw, pres, bmi._buf[PET], tmax, tmin)
    s = bmi.stepper
    keep = s.state_arrays()
    s.reset_state()
    fresh = s.state_arrays()
    for key in MODEL_STATE_KEYS:
        fresh[key] = keep[key]
    s.load_state_arrays(fresh)
    s.model_storage = s._storage_now()
    s.mass_in = s.model_storage.copy()
