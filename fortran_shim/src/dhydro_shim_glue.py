"""Python half of the bmi_dhydro C/Fortran shim.

This file is compiled into libbmi_dhydro.so as a string (tools/embed_py.py) and executed inside
the embedded interpreter as the module ``_dhydro_shim_glue``. The C layer calls the functions and
``Shim`` methods below with plain values (ints, floats, strings and raw memory addresses) and turns
every Python exception into BMI_FAILURE plus a retrievable message, so the checks here raise
exceptions whose text names the variable, what was expected and what arrived.

The wrapped model is any ``bmipy.Bmi``-style class chosen by a "module:Class" string (or
"/path/to/file.py:Class"). It is constructed with no arguments and then initialised with a
configuration file path.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import os
import sys
import traceback

import numpy as np

BUILTIN_DEFAULT_CLASS = "bmi_dhydro:BmiDeltaModel"

# numpy dtype name -> C type name reported through the C BMI struct (what ngen's adapter expects)
_C_TYPE_NAMES = {
    "float64": "double",
    "float32": "float",
    "int32": "int",
    "int64": "long",
    "int16": "short",
    "int8": "signed char",
    "uint8": "unsigned char",
    "uint16": "unsigned short",
    "uint32": "unsigned int",
    "uint64": "unsigned long",
    "bool": "bool",
}

# names some BMI implementations use instead of numpy dtype names
_TYPE_ALIASES = {
    "double precision": "float64",
    "double": "float64",
    "real": "float32",
    "float": "float32",
    "real*4": "float32",
    "real*8": "float64",
    "integer": "int32",
    "int": "int32",
    "long": "int64",
    "long long": "int64",
    "integer*4": "int32",
    "integer*8": "int64",
}


def describe_environment() -> str:
    """One line saying which interpreter and environment the shim is running in."""
    return (f"embedded Python {sys.version.split()[0]}, sys.executable={sys.executable!r}, "
            f"sys.prefix={sys.prefix!r}")


def format_exception(exc: BaseException, with_traceback: bool) -> str:
    if with_traceback:
        return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    text = str(exc)
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]  # str(KeyError) adds quotes
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def resolve_class(spec: str):
    """Import the BMI class named by ``spec`` ("package.module:Class" or "/path/file.py:Class")."""
    if not isinstance(spec, str) or ":" not in spec:
        raise ValueError(
            f"BMI class spec must look like 'module:Class' or '/path/to/file.py:Class', got {spec!r}")
    module_name, _, class_name = spec.rpartition(":")
    if not module_name or not class_name:
        raise ValueError(f"BMI class spec {spec!r} has an empty module or class part")
    if module_name.endswith(".py") or os.sep in module_name:
        path = os.path.abspath(module_name)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"BMI class spec {spec!r}: Python file {path!r} does not exist")
        mod_name = "_dhydro_user_" + os.path.splitext(os.path.basename(path))[0]
        module = sys.modules.get(mod_name)
        if module is None or getattr(module, "__file__", None) != path:
            loader_spec = importlib.util.spec_from_file_location(mod_name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[mod_name] = module
            try:
                loader_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(mod_name, None)
                raise
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ImportError(
                f"BMI class spec {spec!r}: cannot import module {module_name!r} ({exc}); "
                f"{describe_environment()}") from exc
    try:
        cls = getattr(module, class_name)
    except AttributeError:
        raise AttributeError(
            f"BMI class spec {spec!r}: module {module_name!r} has no attribute {class_name!r}") from None
    if not callable(cls):
        raise TypeError(f"BMI class spec {spec!r}: {class_name!r} is not a class")
    return cls


def normalise_dtype(type_name, var_name: str) -> np.dtype:
    """numpy dtype for what a model's get_var_type returned."""
    if isinstance(type_name, np.dtype):
        return type_name
    key = str(type_name).strip().lower()
    key = _TYPE_ALIASES.get(key, key)
    try:
        return np.dtype(key)
    except TypeError:
        raise TypeError(
            f"variable {var_name!r}: the model reports type {type_name!r}, which is not a numpy "
            "dtype name the shim understands (expected e.g. 'float64', 'float32', 'int32', 'int64')"
        ) from None


def _view(addr: int, count: int, dtype: np.dtype, role: str) -> np.ndarray:
    """A writable numpy array over ``count`` items of caller memory at ``addr`` (no copy)."""
    if count < 0:
        raise ValueError(f"negative item count {count} for the {role} array")
    if count == 0:
        return np.empty(0, dtype=dtype)
    if not addr:
        raise ValueError(f"the {role} array pointer is NULL")
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(addr)
    return np.frombuffer(raw, dtype=dtype)


def _cast_into(dest: np.ndarray, src: np.ndarray, what: str) -> None:
    """Copy ``src`` into ``dest``; only exact conversions (widening, or integers that fit)."""
    if src.dtype == dest.dtype or np.can_cast(src.dtype, dest.dtype, casting="safe"):
        np.copyto(dest, src, casting="safe")
        return
    if dest.dtype.kind in "iu" and src.dtype.kind in "iu":
        if src.size:
            info = np.iinfo(dest.dtype)
            lo, hi = int(src.min()), int(src.max())
            if lo < info.min or hi > info.max:
                raise OverflowError(
                    f"values range over [{lo}, {hi}], which does not fit in {dest.dtype} ({what})")
        np.copyto(dest, src, casting="unsafe")
        return
    raise TypeError(
        f"wrong type: cannot convert {src.dtype} values to {dest.dtype} without losing information "
        f"({what}); use the variant of the call that matches the variable's type")


class Shim:
    """One wrapped model instance, as seen from C."""

    def __init__(self, spec: str):
        self.spec = spec
        self.cls = resolve_class(spec)
        try:
            self.model = self.cls()
        except TypeError as exc:
            raise TypeError(f"BMI class {spec!r} could not be constructed with no arguments: {exc}") from exc
        self.initialized = False
        self._pinned: dict[str, np.ndarray] = {}
        self._info: dict[str, tuple] = {}
        self._names = None

    # ---------------------------------------------------------------- lifecycle
    def initialize(self, config_file: str) -> None:
        self._info.clear()
        self._pinned.clear()
        self._names = None
        self.model.initialize(config_file)
        self.initialized = True

    def update(self) -> None:
        self.model.update()

    def update_until(self, then: float) -> None:
        self.model.update_until(float(then))

    def finalize(self) -> None:
        try:
            self.model.finalize()
        finally:
            self.initialized = False
            self._pinned.clear()
            self._info.clear()
            self._names = None

    # ---------------------------------------------------------------- exchange items
    def component_name(self) -> str:
        return str(self.model.get_component_name())

    def _var_names(self):
        if self._names is None:
            ins = tuple(str(n) for n in self.model.get_input_var_names())
            outs = tuple(str(n) for n in self.model.get_output_var_names())
            self._names = (ins, outs)
        return self._names

    def input_names(self):
        return list(self._var_names()[0])

    def output_names(self):
        return list(self._var_names()[1])

    def input_count(self) -> int:
        return int(self.model.get_input_item_count())

    def output_count(self) -> int:
        return int(self.model.get_output_item_count())

    def input_name(self, index: int) -> str:
        names = self._var_names()[0]
        if not 0 <= index < len(names):
            raise IndexError(f"input variable index {index} out of range: the model has {len(names)} inputs")
        return names[index]

    def output_name(self, index: int) -> str:
        names = self._var_names()[1]
        if not 0 <= index < len(names):
            raise IndexError(f"output variable index {index} out of range: the model has {len(names)} outputs")
        return names[index]

    # ---------------------------------------------------------------- variable information
    def _unknown(self, name: str, exc: BaseException):
        said = format_exception(exc, False)
        known = ""
        if len(said) < 200 and "valid" not in said:  # a terse model message: list the exchange items
            try:
                ins, outs = self._var_names()
                known = f"; inputs: {', '.join(ins) or 'none'}; outputs: {', '.join(outs) or 'none'}"
            except Exception:  # noqa: BLE001 - only used to enrich the message
                pass
        return KeyError(f"unknown variable {name!r} ({self.spec} raised {said}){known}")

    def info(self, name: str):
        """(dtype, itemsize, nbytes, count) of a variable, validated.

        Type and itemsize are cached per variable; nbytes is asked every time because a model may
        resize a variable (BmiDeltaModel's ngen::serialization_state does).
        """
        hit = self._info.get(name)
        if hit is None:
            try:
                type_name = self.model.get_var_type(name)
            except Exception as exc:  # noqa: BLE001
                raise self._unknown(name, exc) from exc
            dtype = normalise_dtype(type_name, name)
            itemsize = int(self.model.get_var_itemsize(name))
            if itemsize != dtype.itemsize:
                raise ValueError(f"variable {name!r}: the model reports type {type_name!r} "
                                 f"({dtype.itemsize} bytes) but itemsize {itemsize}")
            hit = self._info[name] = (dtype, itemsize)
        dtype, itemsize = hit
        nbytes = int(self.model.get_var_nbytes(name))
        if nbytes < 0 or nbytes % itemsize:
            raise ValueError(f"variable {name!r}: nbytes {nbytes} is not a multiple of itemsize {itemsize}")
        return dtype, itemsize, nbytes, nbytes // itemsize

    def var_dtype(self, name: str) -> str:
        return self.info(name)[0].name

    def var_c_type(self, name: str) -> str:
        dtype = self.info(name)[0]
        return _C_TYPE_NAMES.get(dtype.name, dtype.name)

    def var_itemsize(self, name: str) -> int:
        return self.info(name)[1]

    def var_nbytes(self, name: str) -> int:
        return self.info(name)[2]

    def var_count(self, name: str) -> int:
        return self.info(name)[3]

    def var_grid(self, name: str) -> int:
        self.info(name)
        return int(self.model.get_var_grid(name))

    def var_units(self, name: str) -> str:
        self.info(name)
        return str(self.model.get_var_units(name))

    def var_location(self, name: str) -> str:
        self.info(name)
        return str(self.model.get_var_location(name))

    # ---------------------------------------------------------------- time
    def current_time(self) -> float:
        return float(self.model.get_current_time())

    def start_time(self) -> float:
        return float(self.model.get_start_time())

    def end_time(self) -> float:
        return float(self.model.get_end_time())

    def time_step(self) -> float:
        return float(self.model.get_time_step())

    def time_units(self) -> str:
        return str(self.model.get_time_units())

    # ---------------------------------------------------------------- values
    def _want(self, name: str, dtype_name, dtype: np.dtype) -> np.dtype:
        if not dtype_name:
            return dtype
        try:
            return np.dtype(dtype_name)
        except TypeError:
            raise TypeError(f"variable {name!r}: unknown buffer type {dtype_name!r}") from None

    def _check_count(self, call: str, name: str, given: int, n: int, dtype, role: str) -> int:
        if given < 0:  # C BMI struct: caller promises a buffer of the variable's full size
            return n
        if given != n:
            raise ValueError(
                f"wrong array size: the variable has {n} items ({dtype}) but the {role} array has {given}")
        return n

    def _fetch(self, name: str, dtype: np.dtype, n: int, out: np.ndarray | None = None) -> np.ndarray:
        """The variable's values (flattened) via the model's own get_value."""
        buf = out if out is not None else np.empty(n, dtype=dtype)
        res = self.model.get_value(name, buf)
        if res is not None and res is not buf:
            res = np.asarray(res)
            if not np.shares_memory(res, buf):
                if res.size != n:
                    raise ValueError(f"the model's get_value returned {res.size} values, expected {n}")
                buf[...] = res.reshape(-1)
        return buf

    def get_value(self, name: str, addr: int, count: int, dtype_name) -> None:
        dtype, _, _, n = self.info(name)
        want = self._want(name, dtype_name, dtype)
        n = self._check_count("get_value", name, count, n, dtype, "destination")
        dest = _view(addr, n, want, "destination")
        if want == dtype:
            self._fetch(name, dtype, n, out=dest)
        else:
            _cast_into(dest, self._fetch(name, dtype, n), f"the variable is {dtype}, the destination {want}")

    def get_value_ptr(self, name: str, dtype_name):
        """(address, count) of the model's live buffer; the array is pinned until finalize."""
        dtype, _, _, n = self.info(name)
        if dtype_name and np.dtype(dtype_name) != dtype:
            raise TypeError(
                f"wrong type: the variable is {dtype} but a {np.dtype(dtype_name)} pointer was requested; "
                "a pointer cannot convert types (use get_value for a converted copy)")
        arr = self.model.get_value_ptr(name)
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"the model's get_value_ptr returned {type(arr).__name__}, not a numpy "
                            "array, so there is no buffer to point to")
        if arr.dtype != dtype:
            raise TypeError(f"the model's array is {arr.dtype} but its get_var_type says {dtype}")
        if arr.size != n:
            raise ValueError(f"the model's array has {arr.size} items but its get_var_nbytes/itemsize "
                             f"say {n}")
        if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
            raise ValueError("the model's array is not contiguous in memory, so no pointer to its "
                             "values can be given")
        self._pinned[name] = arr  # keep the buffer alive for the host
        return int(arr.__array_interface__["data"][0]), int(n)

    def _indices(self, call: str, name: str, addr: int, count: int, n: int) -> np.ndarray:
        inds = _view(addr, count, np.dtype(np.intc), "indices").astype(np.intp)
        if inds.size and (inds.min() < 0 or inds.max() >= n):
            bad = inds[(inds < 0) | (inds >= n)][0]
            raise IndexError(f"index {bad} out of range: valid 0-based indices are 0..{n - 1} "
                             f"(the variable has {n} items)")
        return inds

    def get_value_at_indices(self, name: str, addr: int, inds_addr: int, count: int, dtype_name) -> None:
        dtype, _, _, n = self.info(name)
        want = self._want(name, dtype_name, dtype)
        inds = self._indices("get_value_at_indices", name, inds_addr, count, n)
        dest = _view(addr, count, want, "destination")
        tmp = np.empty(count, dtype=dtype)
        res = self.model.get_value_at_indices(name, tmp, inds)
        if res is not None and res is not tmp and not np.shares_memory(np.asarray(res), tmp):
            tmp[...] = np.asarray(res).reshape(-1)
        _cast_into(dest, tmp, f"the variable is {dtype}, the destination {want}")

    def set_value(self, name: str, addr: int, count: int, dtype_name) -> None:
        dtype, _, _, n = self.info(name)
        have = self._want(name, dtype_name, dtype)
        n = self._check_count("set_value", name, count, n, dtype, "source")
        src = _view(addr, n, have, "source")
        values = np.empty(n, dtype=dtype)  # the model never keeps a reference to host memory
        _cast_into(values, src, f"the variable is {dtype}, the source {have}")
        self.model.set_value(name, values)

    def set_value_at_indices(self, name: str, inds_addr: int, count: int, addr: int, dtype_name) -> None:
        dtype, _, _, n = self.info(name)
        have = self._want(name, dtype_name, dtype)
        inds = self._indices("set_value_at_indices", name, inds_addr, count, n)
        src = _view(addr, count, have, "source")
        values = np.empty(count, dtype=dtype)
        _cast_into(values, src, f"the variable is {dtype}, the source {have}")
        self.model.set_value_at_indices(name, inds, values)

    # ---------------------------------------------------------------- grids
    def grid_int(self, what: str, grid: int) -> int:
        return int(getattr(self.model, "get_grid_" + what)(int(grid)))

    def grid_type(self, grid: int) -> str:
        return str(self.model.get_grid_type(int(grid)))

    _GRID_FLOAT = {"spacing", "origin", "x", "y", "z"}
    _GRID_INT = {"shape", "edge_nodes", "face_edges", "face_nodes", "nodes_per_face"}

    def _grid_len(self, what: str, grid: int) -> int:
        m = self.model
        if what in ("shape", "spacing", "origin"):
            return int(m.get_grid_rank(grid))
        if what in ("x", "y", "z"):
            gtype = str(m.get_grid_type(grid)).lower()
            if gtype in ("rectilinear", "uniform_rectilinear"):
                rank = int(m.get_grid_rank(grid))
                axis = {"x": 1, "y": 2, "z": 3}[what]
                if axis > rank:
                    raise ValueError(f"get_grid_{what}: grid {grid} has rank {rank}, no {what} axis")
                shape = np.zeros(rank, dtype=np.intc)
                res = m.get_grid_shape(grid, shape)
                shape = shape if res is None else np.asarray(res)
                return int(shape[-axis])
            if gtype in ("structured_quadrilateral", "scalar"):
                return int(m.get_grid_size(grid))
            try:
                return int(m.get_grid_node_count(grid))
            except Exception:  # noqa: BLE001 - points grids may only know their size
                return int(m.get_grid_size(grid))
        if what == "edge_nodes":
            return 2 * int(m.get_grid_edge_count(grid))
        if what == "nodes_per_face":
            return int(m.get_grid_face_count(grid))
        if what in ("face_nodes", "face_edges"):
            npf = np.zeros(int(m.get_grid_face_count(grid)), dtype=np.intc)
            res = m.get_grid_nodes_per_face(grid, npf)
            npf = npf if res is None else np.asarray(res)
            return int(np.sum(npf))
        raise ValueError(f"unknown grid array {what!r}")

    def grid_array(self, what: str, grid: int, addr: int, count: int) -> None:
        grid = int(grid)
        dtype = np.dtype(np.float64) if what in self._GRID_FLOAT else np.dtype(np.intc)
        call = "get_grid_" + what
        if count < 0:
            count = self._grid_len(what, grid)
        dest = _view(addr, count, dtype, "destination")
        tmp = np.zeros(count, dtype=np.float64 if dtype.kind == "f" else np.int64)
        res = getattr(self.model, call)(grid, tmp)
        if res is not None and res is not tmp:
            res = np.asarray(res).reshape(-1)
            if res.size != count:
                raise ValueError(f"wrong array size: the model returned {res.size} values but the "
                                 f"destination array has {count}")
            tmp[...] = res
        _cast_into(dest, tmp, f"grid {grid} {what} values")
