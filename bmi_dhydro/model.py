"""DeltaModel: parameter provider (network or fixed values) + HBV physics + routing over an explicit state.

The one code path used by inference, the BMI and training::

    state = model.initial_state(n_units)
    state, out = model.advance(state, forcing_step, attributes)   # one step   (BMI)
    state, out = model.unroll(state, forcings, attributes)        # a sequence (training, batch runs)

For tiny inference problems (one ngen catchment) ``advance`` runs the same step in numpy
(:meth:`DeltaModel.advance_numpy`, which the BMI's stepper calls directly on numpy views of its state): torch's
per-operation overhead, not arithmetic, is the cost there.

``forcing_step`` is ``(n_units, 3)`` and ``forcings`` ``(time, n_units, 3)`` holding, in order, precipitation
(mm per model step), mean air temperature (°C) and PET (mm per model step).  ``attributes`` is
``(n_units, n_attributes)`` in physical units, or a :class:`Prepared` context from :meth:`DeltaModel.prepare`
(which caches the static parameters, so per-step calls skip the MLP).  Warm-up is explicit: run
:meth:`DeltaModel.warmup` (``unroll`` without gradients) and start from the state it returns.

Outputs are component means (over ``nmul``), each ``(n_units,)`` per step (``(time, n_units)`` from unroll),
in mm per step for fluxes and mm for stores:

``runoff`` (routed), ``runoff_unrouted``, ``et``, ``leak``, ``precip``, ``pet``, ``snowpack``, ``meltwater``,
``swe`` (snowpack + meltwater), ``sm``, ``suz``, ``slz``, ``routing_store`` (water in flight in the unit
hydrograph) and ``storage`` (all stores + routing_store).  Per unit and step,
``Δstorage == precip − et − runoff + leak``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from . import physics
from .physics.arrays import ops
from .nn import ROUTE_NAMES, FixedParameters, NeuralParameters

FORCING_NAMES = ("prcp", "tmean", "pet")
FORCING_UNITS = ("mm step-1", "degC", "mm step-1")
OUTPUT_NAMES = (
    "runoff",
    "runoff_unrouted",
    "et",
    "leak",
    "precip",
    "pet",
    "snowpack",
    "meltwater",
    "swe",
    "sm",
    "suz",
    "slz",
    "routing_store",
    "storage",
)


class ModelConfig(BaseModel):
    """Model structure; stored in every checkpoint."""

    model_config = ConfigDict(extra="forbid")

    variant: Literal["hbv1.0", "hbv1.1p"] = "hbv1.0"
    nmul: int = Field(16, ge=1, le=256)
    dt_days: float = Field(1.0, gt=0.0, le=1.0)
    dynamic_params: list[str] | None = None
    routing: bool = True
    lstm_hidden: int = Field(64, ge=1, le=512)
    mlp_hidden: int = Field(128, ge=1, le=1024)
    mlp_layers: int = Field(2, ge=1, le=6)
    attributes: list[str] = Field(default_factory=list)
    attribute_units: list[str] = Field(default_factory=list)
    # attributes given to the network as log(x) (heavy-tailed ones such as area or slope); a subset of attributes
    log_attributes: list[str] = Field(default_factory=list)
    forcings: list[str] = Field(default_factory=lambda: list(FORCING_NAMES))
    forcing_units: list[str] = Field(default_factory=lambda: list(FORCING_UNITS))
    pet_method: Literal["hamon", "hargreaves", "priestley_taylor", "input"] = "hamon"
    # physics engine of unroll: the fused C++ kernel with a checkpointed hand-derived backward ("fast"), the
    # eager torch loop ("eager"), or fast where it can run, else eager with the reason logged ("auto").  advance()
    # uses it too, except for inference steps of tiny problems, which run in numpy (see DeltaModel.advance)
    engine: Literal["auto", "fast", "eager"] = "auto"

    @field_validator("dynamic_params")
    @classmethod
    def _known_dynamic(cls, v):
        if v is None:
            return v
        bad = [p for p in v if p not in physics.PARAM_BOUNDS]
        if bad:
            raise ValueError(f"dynamic_params: unknown parameter names {bad}; expected among {list(physics.PARAM_BOUNDS)}")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        if len(self.attribute_units) not in (0, len(self.attributes)):
            raise ValueError(
                f"attribute_units: expected {len(self.attributes)} units (one per attribute), got {len(self.attribute_units)}"
            )
        bad = [a for a in self.log_attributes if a not in self.attributes]
        if bad:
            raise ValueError(f"log_attributes: expected names among attributes {self.attributes}, got {bad}")
        if list(self.forcings) != list(FORCING_NAMES):
            raise ValueError(f"forcings: expected {list(FORCING_NAMES)}, got {self.forcings}")
        return self

    @property
    def param_names(self) -> tuple[str, ...]:
        return physics.VARIANT_PARAMS[self.variant]

    @property
    def dynamic(self) -> tuple[str, ...]:
        if self.dynamic_params is None:
            return physics.DEFAULT_DYNAMIC[self.variant]
        return tuple(self.dynamic_params)

    @property
    def capillary(self) -> bool:
        return self.variant == "hbv1.1p"


class ModelState(NamedTuple):
    """Everything needed to continue a run: HBV stores, LSTM state and the routing buffer."""

    hbv: physics.HbvState  # each (n, nmul)
    h: torch.Tensor  # (n, lstm_hidden) or (n, 0)
    c: torch.Tensor
    route_buffer: torch.Tensor  # (n, L) past unrouted runoff, newest last; (n, 0) without routing

    def detach(self) -> "ModelState":
        return ModelState(
            physics.HbvState(*(s.detach() for s in self.hbv)), self.h.detach(), self.c.detach(), self.route_buffer.detach()
        )

    def select(self, index) -> "ModelState":
        """The state of a subset of units (index over the first axis)."""
        return ModelState(
            physics.HbvState(*(s[index] for s in self.hbv)), self.h[index], self.c[index], self.route_buffer[index]
        )

    def as_numpy(self) -> ModelState:
        """This state (CPU tensors) as numpy arrays sharing its memory (for :meth:`DeltaModel.advance_numpy`)."""
        return ModelState(physics.HbvState(*(s.detach().numpy() for s in self.hbv)), self.h.detach().numpy(),
                          self.c.detach().numpy(), self.route_buffer.detach().numpy())

    def as_torch(self) -> ModelState:
        """This state (numpy arrays) as torch tensors sharing its memory."""
        return ModelState(physics.HbvState(*(torch.from_numpy(s) for s in self.hbv)), torch.from_numpy(self.h),
                          torch.from_numpy(self.c), torch.from_numpy(self.route_buffer))


class Prepared(NamedTuple):
    """Per-unit quantities that do not change in time (computed once by :meth:`DeltaModel.prepare`)."""

    attrs_norm: torch.Tensor
    static: dict  # name -> (n, nmul), already scaled to the step
    route: dict  # name -> (n,)
    uh: torch.Tensor | None  # (n, L) unit hydrograph or None


class NumpyPrepared(NamedTuple):
    """A :class:`Prepared` as numpy arrays, for :meth:`DeltaModel.advance_numpy` (from :meth:`DeltaModel.prepare_numpy`)."""

    attrs_norm: np.ndarray
    static: dict  # name -> (n, nmul), already scaled to the step
    uh: np.ndarray | None  # (n, L) unit hydrograph or None
    uh_step: np.ndarray | None  # (n, L, 2) physics.step_matrix(uh): one step's routing and water in flight


#: advance() runs an inference step (autograd off, CPU) of at most this many values per state (n_units · nmul) in
#: numpy: there torch's per-operation dispatch (a few µs per call, ~150 calls per step), not the arithmetic, is the
#: cost.  Above it the step runs in torch (engine: the fused kernel or the eager loop).  On a 2-core x86 machine,
#: float64, nmul 16: numpy 90 µs vs torch 310 µs for one unit; even at about 2048 values.
NUMPY_STEP_MAX_VALUES = 1024


def numpy_component_means(*xs: np.ndarray) -> np.ndarray:
    """Component means (over the last axis, nmul) of (n, nmul) numpy arrays, stacked: ``(len(xs), n)``."""
    nmul = xs[0].shape[-1]
    return (np.add.reduce(np.concatenate(xs), axis=-1) / nmul).reshape(len(xs), -1)  # one reduction for all


class DeltaModel(nn.Module):
    """Differentiable HBV driven by a parameter provider."""

    def __init__(self, config: ModelConfig, provider: nn.Module | None = None):
        super().__init__()
        self.config = config
        if provider is None:
            provider = NeuralParameters(
                n_attributes=len(config.attributes),
                n_forcings=len(config.forcings),
                param_names=config.param_names,
                dynamic=config.dynamic,
                nmul=config.nmul,
                lstm_hidden=config.lstm_hidden,
                mlp_hidden=config.mlp_hidden,
                mlp_layers=config.mlp_layers,
                log_attributes=tuple(a in config.log_attributes for a in config.attributes),
            )
        self.provider = provider
        self.uh_len = physics.uh_length(config.dt_days) if config.routing else 0

    # -- construction helpers ------------------------------------------------------------------------------------
    @classmethod
    def fixed(
        cls, parameters: dict, variant: str = "hbv1.0", routing: bool = True, dt_days: float = 1.0, pet_method: str = "hamon"
    ) -> "DeltaModel":
        """Classic HBV with given parameters (scalars or one value per unit), nmul 1, in float64."""
        names = physics.VARIANT_PARAMS[variant]
        allowed = set(names) | set(ROUTE_NAMES)
        unknown = sorted(set(parameters) - allowed)
        if unknown:
            raise ValueError(f"parameters: unknown names {unknown}; expected among {sorted(allowed)}")
        values = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in parameters.items()}
        physics.check_bounds(values)
        for rname in ROUTE_NAMES:
            if routing and rname not in values:
                raise ValueError(f"parameters: routing is on, so {rname} is required")
            if rname in values:
                lo, hi = physics.ROUTE_BOUNDS[rname]
                v = values[rname]
                if bool((v < lo).any()) or bool((v > hi).any()):
                    raise ValueError(f"parameter {rname}: expected values in [{lo}, {hi}], got min {float(v.min())} max {float(v.max())}")
        cfg = ModelConfig(variant=variant, nmul=1, dt_days=dt_days, dynamic_params=[], routing=routing, pet_method=pet_method)
        return cls(cfg, FixedParameters(values, names)).double()

    def with_step(self, dt_days: float) -> "DeltaModel":
        """A view of this model whose physics and routing step ``dt_days`` (the same network, weights shared, not
        copied): used by the BMI's hourly stepping, where the network still sees daily aggregates."""
        import copy

        view = copy.copy(self)  # a new instance dict; modules, parameters and buffers are the same objects
        view.__dict__["config"] = self.config.model_copy(update={"dt_days": float(dt_days)})
        view.__dict__["uh_len"] = physics.uh_length(dt_days) if self.config.routing else 0
        # the routing keeps the daily-trained timing: the daily unit hydrograph centred on the day that made the
        # runoff (physics.gamma_uh's center_days), so daily totals follow the daily model's (bench/bench_hourly.py)
        if dt_days < self.config.dt_days:
            view.__dict__["uh_center_days"] = 0.5 * self.config.dt_days
        return view

    def with_physics_fraction(self, fraction: float) -> "DeltaModel":
        """A view whose physics steps ``fraction`` of the model step (its rates scaled to it) while the routing keeps
        the model step; the same network, weights shared.  The BMI's ``day_so_far`` stepping re-runs the day's step
        on the part of the day elapsed with it; prepare its steps with :meth:`prepared_fraction`."""
        import copy

        view = copy.copy(self)
        view.__dict__["config"] = self.config.model_copy(update={"dt_days": self.config.dt_days * fraction})
        return view

    @staticmethod
    def prepared_fraction(prep: Prepared, fraction: float) -> Prepared:
        """``prep`` (of the model) for :meth:`with_physics_fraction`: static rates scaled to ``fraction`` of the
        model step, the model step's unit hydrograph."""
        return prep._replace(static=physics.scale_rates(prep.static, fraction))

    @property
    def is_fixed(self) -> bool:
        return isinstance(self.provider, FixedParameters)

    def _dtype_device(self):
        for b in self.buffers():
            if b.is_floating_point():
                return b.dtype, b.device
        return torch.float32, torch.device("cpu")

    # -- state -----------------------------------------------------------------------------------------------------
    def initial_state(self, n_units: int, dtype=None, device=None) -> ModelState:
        d0, dev0 = self._dtype_device()
        dtype = dtype or d0
        device = device or dev0
        hbv = physics.initial_state(n_units, self.provider.nmul, dtype=dtype, device=device)
        hs = self.provider.lstm_state_size()
        h = torch.zeros(n_units, hs, dtype=dtype, device=device)
        return ModelState(hbv, h, h.clone(), torch.zeros(n_units, self.uh_len, dtype=dtype, device=device))

    # -- parameters ------------------------------------------------------------------------------------------------
    def prepare(self, attributes) -> Prepared:
        if isinstance(attributes, Prepared):
            return attributes
        static, route, attrs_norm = self.provider.static_parameters(attributes)
        return self.prepared_from(static, route, attrs_norm)

    def prepared_from(self, static: dict, route: dict, attrs_norm: torch.Tensor) -> Prepared:
        """A :class:`Prepared` from per-day static parameters (n, nmul) and routing parameters (n,)."""
        static = physics.scale_rates(static, self.config.dt_days)
        uh = None
        if self.config.routing:
            uh = physics.gamma_uh(route["route_a"], route["route_b"], self.uh_len, self.config.dt_days,
                                  center_days=self.__dict__.get("uh_center_days", 0.0))
        return Prepared(attrs_norm, static, route, uh)

    def physical_parameters(self, attributes, forcings=None, state: ModelState | None = None) -> dict:
        """Per-day physical parameters (n, nmul) for inspection; dynamic ones at the last step of ``forcings``."""
        static, route, attrs_norm = self.provider.static_parameters(attributes)
        out = dict(static)
        out.update({k: v.unsqueeze(-1) for k, v in route.items()})
        if self.provider.dynamic and forcings is not None:
            st = state or self.initial_state(attributes.shape[0])
            dyn, _, _ = self.provider.dynamic_sequence(forcings, attrs_norm, st.h, st.c)
            out.update({k: v[-1] for k, v in dyn.items()})
        return out

    # -- stepping --------------------------------------------------------------------------------------------------
    def _physics(self, hbv, forcing_t, params):
        return physics.step(
            hbv, forcing_t[:, 0], forcing_t[:, 1], forcing_t[:, 2], params, capillary=self.config.capillary
        )

    def _outputs(self, means, forcing_t, routed, rstore):
        """One step's outputs from the component means of the physics (q, et, leak and the five stores) and the
        water in flight in the routing (torch tensors or numpy arrays)."""
        stores = {n: means[n] for n in physics.STATE_NAMES}
        out = {
            "runoff": routed,
            "runoff_unrouted": means["q"],
            "et": means["et"],
            "leak": means["leak"],
            "precip": forcing_t[..., 0],
            "pet": forcing_t[..., 2],
            **stores,
            "swe": stores["snowpack"] + stores["meltwater"],
            "routing_store": rstore,
        }
        names = physics.STATE_NAMES
        total = stores[names[0]]
        for n in names[1:]:  # the sums of sum(), without its leading 0 + (one operation fewer per step)
            total = total + stores[n]
        out["storage"] = total + rstore
        return out

    def _route_and_outputs(self, means, forcing_t, route_buffer, uh, uh_step=None):
        """Route one step's runoff (when ``uh`` is given) and build the outputs; torch tensors or numpy arrays
        (``uh_step``: numpy, :func:`physics.step_matrix` of ``uh``).  Returns the new routing buffer and the outputs."""
        q = means["q"]
        if uh_step is not None:
            routed, buffer, rstore = physics.route_step_in_flight(q, route_buffer, uh_step)
        elif uh is not None:
            routed, buffer = physics.route_step(q, uh, route_buffer)
            rstore = physics.in_flight(uh, buffer)
        else:
            routed, buffer, rstore = q, route_buffer, ops(q).zeros_like(q)
        return buffer, self._outputs(means, forcing_t, routed, rstore)

    def numpy_step_suitable(self, n_units: int) -> bool:
        """Whether an inference step over ``n_units`` runs in numpy (:meth:`advance_numpy`) rather than torch."""
        return n_units * self.provider.nmul <= NUMPY_STEP_MAX_VALUES and self._dtype_device()[1].type == "cpu"

    def advance(self, state: ModelState, forcing_step: torch.Tensor, attributes, dynamic: dict | None = None
                ) -> tuple[ModelState, dict]:
        """One model step.  ``forcing_step`` (n, 3).  ``dynamic`` optionally gives the per-day dynamic parameters
        (name → (n, nmul)) to use instead of running the LSTM (the LSTM state is then carried unchanged).

        With autograd off, on the CPU and for a tiny problem (:meth:`numpy_step_suitable`) the step runs through
        :meth:`advance_numpy` (the same equations, equal to rounding); otherwise in torch."""
        prep = self.prepare(attributes)
        if not torch.is_grad_enabled() and forcing_step.device.type == "cpu" and self.numpy_step_suitable(forcing_step.shape[0]):
            nprep = self.prepare_numpy(prep)
            dyn_np = None if dynamic is None else {k: v.detach().numpy() for k, v in dynamic.items()}
            st, out = self.advance_numpy(state.as_numpy(), forcing_step.detach().numpy(), nprep, dynamic=dyn_np)
            return st.as_torch(), {k: torch.from_numpy(v) for k, v in out.items()}
        return self._advance_torch(state, forcing_step, prep, dynamic=dynamic)

    def prepare_numpy(self, attributes) -> NumpyPrepared:
        """:meth:`prepare` as numpy arrays (views where they can be) for :meth:`advance_numpy`."""
        prep = self.prepare(attributes)
        uh = None if prep.uh is None else prep.uh.detach().numpy()
        return NumpyPrepared(prep.attrs_norm.detach().numpy(), {k: v.detach().numpy() for k, v in prep.static.items()},
                             uh, None if uh is None else physics.step_matrix(uh))

    def advance_numpy(self, state: ModelState, forcing_step: np.ndarray, prep: NumpyPrepared, dynamic: dict | None = None
                      ) -> tuple[ModelState, dict]:
        """:meth:`advance` for inference on numpy arrays: ``state`` a :class:`ModelState` of numpy arrays,
        ``forcing_step`` (n, 3), ``prep`` from :meth:`prepare_numpy`.  Returns the new state (numpy) and the outputs
        (numpy arrays, the keys of :meth:`advance`).  The same equations as the torch step (``physics.step``,
        ``route_step``, the LSTM cell), so the numbers agree to rounding."""
        config = self.config
        if dynamic is None:
            dyn, h, c = self.provider.dynamic_step_numpy(forcing_step, prep.attrs_norm, state.h, state.c)
        else:
            dyn, h, c = dynamic, state.h, state.c
        params = dict(prep.static)
        if dyn:
            params.update(physics.scale_rates(dyn, config.dt_days))
        hbv, fluxes = physics.step(state.hbv, forcing_step[:, 0], forcing_step[:, 1], forcing_step[:, 2], params,
                                   capillary=config.capillary)
        m = numpy_component_means(fluxes.q, fluxes.et, fluxes.leak, *hbv)  # one reduction for all eight
        means = {"q": m[0], "et": m[1], "leak": m[2], **dict(zip(physics.STATE_NAMES, m[3:]))}
        buffer, out = self._route_and_outputs(means, forcing_step, state.route_buffer, prep.uh, prep.uh_step)
        if dyn:  # per-day values, component mean
            out.update(zip([f"param_{k}" for k in dyn], numpy_component_means(*dyn.values())))
        return ModelState(hbv, h, c, buffer), out

    def _advance_torch(self, state: ModelState, forcing_step: torch.Tensor, prep: Prepared, dynamic: dict | None = None
                       ) -> tuple[ModelState, dict]:
        if dynamic is None:
            dyn, h, c = self.provider.dynamic_step(forcing_step, prep.attrs_norm, state.h, state.c)
        else:
            dyn, h, c = dynamic, state.h, state.c
        params = dict(prep.static)
        if dyn:
            params.update(physics.scale_rates(dyn, self.config.dt_days))
        dyn_mean = {f"param_{k}": v.mean(-1) for k, v in dyn.items()}  # per-day values, component mean
        if self.config.engine != "eager":
            # the same kernel as unroll, one step: unroll and repeated advance give the same numbers
            from .physics.fast import hbv_unroll

            scaled = {k: params[k].unsqueeze(0) for k in dyn}
            static = {k: v for k, v in params.items() if k not in dyn}
            hbv, o = hbv_unroll(state.hbv, forcing_step.unsqueeze(0), static, scaled, self.config.capillary,
                                outputs=("q", "et", "leak") + physics.STATE_NAMES, engine=self.config.engine)
            means = {k: v[0] for k, v in o.items()}
        else:
            hbv, fluxes = self._physics(state.hbv, forcing_step, params)
            means = {"q": fluxes.q.mean(-1), "et": fluxes.et.mean(-1), "leak": fluxes.leak.mean(-1),
                     **{n: getattr(hbv, n).mean(-1) for n in physics.STATE_NAMES}}
        buffer, out = self._route_and_outputs(means, forcing_step, state.route_buffer, prep.uh)
        out.update(dyn_mean)
        return ModelState(hbv, h, c, buffer), out

    def unroll(self, state: ModelState, forcings: torch.Tensor, attributes, outputs=OUTPUT_NAMES, dynamic=None) -> tuple[ModelState, dict]:
        """A sequence of steps.  ``forcings`` (T, n, 3); returns outputs stacked to (T, n).

        ``dynamic`` optionally supplies precomputed ``(per-day dynamic parameters (T, n, nmul), h, c)`` (used by
        gradient export to take gradients with respect to them)."""
        prep = self.prepare(attributes)
        if dynamic is None:
            dyn, h, c = self.provider.dynamic_sequence(forcings, prep.attrs_norm, state.h, state.c)
        else:
            dyn, h, c = dynamic
        if dyn:
            dyn = physics.scale_rates(dyn, self.config.dt_days)
        hbv = state.hbv
        qs, collected = [], {k: [] for k in outputs}
        buffer = state.route_buffer
        need_stores = any(k not in ("runoff", "runoff_unrouted") for k in outputs)
        if self.config.engine != "eager":
            return self._unroll_fast(state, forcings, prep, dyn, h, c, outputs, need_stores)
        f_steps = forcings.unbind(0)  # unbind once: indexing [t] makes the backward O(T^2)
        d_steps = {k: v.unbind(0) for k, v in dyn.items()}
        for t in range(forcings.shape[0]):
            params = dict(prep.static)
            for k, v in d_steps.items():
                params[k] = v[t]
            hbv, fluxes = self._physics(hbv, f_steps[t], params)
            q = fluxes.q.mean(-1)
            qs.append(q)
            if need_stores:
                # routing store needs the buffer at t: computed after routing below for exactness
                means = {"q": q, "et": fluxes.et.mean(-1), "leak": fluxes.leak.mean(-1),
                         **{n: getattr(hbv, n).mean(-1) for n in physics.STATE_NAMES}}
                collected_t = self._outputs(means, f_steps[t], q, torch.zeros_like(q))
                for k in outputs:
                    if k not in ("runoff", "routing_store", "storage"):
                        collected[k].append(collected_t[k])
                if "storage" in outputs or "routing_store" in outputs:
                    collected.setdefault("_stores", []).append(collected_t["storage"])
        q_seq = torch.stack(qs)
        if prep.uh is not None:
            routed, buffer = physics.route_sequence(q_seq, prep.uh, buffer)
        else:
            routed = q_seq
        out = {}
        for k in outputs:
            if k == "runoff":
                out[k] = routed
            elif k == "runoff_unrouted":
                out[k] = q_seq
            elif k in ("routing_store", "storage"):
                continue
            else:
                out[k] = torch.stack(collected[k])
        if "routing_store" in outputs or "storage" in outputs:
            rstore = self._routing_store_sequence(q_seq, prep.uh, state.route_buffer)
            if "routing_store" in outputs:
                out["routing_store"] = rstore
            if "storage" in outputs:
                out["storage"] = torch.stack(collected["_stores"]) + rstore
        return ModelState(hbv, h, c, buffer), out

    def _unroll_fast(self, state, forcings, prep, dyn, h, c, outputs, need_stores):
        """The physics loop through :func:`bmi_dhydro.physics.fast.hbv_unroll` (same equations, same outputs)."""
        from .physics.fast import hbv_unroll

        names = ("q", "et", "leak") + physics.STATE_NAMES if need_stores else ("q",)
        hbv, o = hbv_unroll(state.hbv, forcings, prep.static, dyn, self.config.capillary, outputs=names,
                            engine=self.config.engine)
        q_seq = o["q"]
        if prep.uh is not None:
            routed, buffer = physics.route_sequence(q_seq, prep.uh, state.route_buffer)
        else:
            routed, buffer = q_seq, state.route_buffer
        out = {}
        for k in outputs:
            if k == "runoff":
                out[k] = routed
            elif k == "runoff_unrouted":
                out[k] = q_seq
            elif k in ("et", "leak") + physics.STATE_NAMES:
                out[k] = o[k]
            elif k == "precip":
                out[k] = forcings[..., 0]
            elif k == "pet":
                out[k] = forcings[..., 2]
            elif k == "swe":
                out[k] = o["snowpack"] + o["meltwater"]
        if "routing_store" in outputs or "storage" in outputs:
            rstore = self._routing_store_sequence(q_seq, prep.uh, state.route_buffer)
            if "routing_store" in outputs:
                out["routing_store"] = rstore
            if "storage" in outputs:
                out["storage"] = sum(o[n] for n in physics.STATE_NAMES) + rstore
        return ModelState(hbv, h, c, buffer), out

    def _routing_store_sequence(self, q_seq, uh, buffer0):
        if uh is None:
            return torch.zeros_like(q_seq)
        # the buffer after step t is the last L entries of [buffer0, q_0..q_t]
        hist = torch.cat([buffer0, q_seq.transpose(0, 1)], dim=1)
        windows = hist.unfold(1, uh.shape[-1], 1)[:, 1:, :]  # (n, T, L) newest last
        remaining = uh.flip(-1).cumsum(-1).flip(-1)
        tail = torch.cat([remaining[:, 1:], remaining.new_zeros(remaining.shape[0], 1)], dim=-1)
        return (windows.flip(-1) * tail.unsqueeze(1)).sum(-1).transpose(0, 1)

    @torch.no_grad()
    def warmup(self, state: ModelState, forcings: torch.Tensor, attributes) -> ModelState:
        """Run ``forcings`` without gradients and return the detached end state (explicit spin-up)."""
        st, _ = self.unroll(state, forcings, attributes, outputs=("runoff",))
        return st.detach()
