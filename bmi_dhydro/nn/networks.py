"""Parameter providers for the δHBV 2.0 split.

* :class:`NeuralParameters` — an MLP on static attributes gives the static physics parameters and the routing
  parameters; an LSTM on the normalised forcings plus attributes gives the dynamic (time-varying) parameters.
  Because only the LSTM sees time, one-step running (``dynamic_step``) and sequence running (``dynamic_sequence``)
  are the same computation.
* :class:`FixedParameters` — classic HBV with given parameter values (calibrated HBV, component swaps, tests).

Both return physical values (inside the physics bounds) shaped ``(n_units, nmul)`` for HBV parameters and
``(n_units,)`` for routing parameters.  Normalisation statistics are buffers, so they travel in the checkpoint.
"""

from __future__ import annotations

import torch
from torch import nn

from ..physics import ROUTE_BOUNDS, descale

ROUTE_NAMES = ("route_a", "route_b")


def _descale_route(raw: torch.Tensor, name: str) -> torch.Tensor:
    lo, hi = ROUTE_BOUNDS[name]
    return lo + raw * (hi - lo)


class NeuralParameters(nn.Module):
    """MLP (static + routing) and LSTM (dynamic) parameterisation."""

    def __init__(
        self,
        n_attributes: int,
        n_forcings: int,
        param_names: tuple[str, ...],
        dynamic: tuple[str, ...],
        nmul: int = 16,
        lstm_hidden: int = 64,
        mlp_hidden: int = 128,
        mlp_layers: int = 2,
    ):
        super().__init__()
        unknown = [d for d in dynamic if d not in param_names]
        if unknown:
            raise ValueError(f"dynamic_params: expected names among {list(param_names)}, got {unknown}")
        self.param_names = tuple(param_names)
        self.dynamic = tuple(d for d in param_names if d in dynamic)
        self.static = tuple(p for p in param_names if p not in dynamic)
        self.nmul = nmul
        self.lstm_hidden = lstm_hidden
        self.n_attributes = n_attributes
        self.n_forcings = n_forcings

        layers: list[nn.Module] = []
        width = n_attributes
        for _ in range(mlp_layers):
            layers += [nn.Linear(width, mlp_hidden), nn.Tanh()]
            width = mlp_hidden
        layers.append(nn.Linear(width, len(self.static) * nmul + len(ROUTE_NAMES)))
        self.mlp = nn.Sequential(*layers)
        self.lstm = nn.LSTM(n_forcings + n_attributes, lstm_hidden) if self.dynamic else None
        self.lstm_head = nn.Linear(lstm_hidden, len(self.dynamic) * nmul) if self.dynamic else None

        self.register_buffer("attr_mean", torch.zeros(n_attributes))
        self.register_buffer("attr_std", torch.ones(n_attributes))
        self.register_buffer("forc_mean", torch.zeros(n_forcings))
        self.register_buffer("forc_std", torch.ones(n_forcings))

    # -- normalisation -------------------------------------------------------------------------------------------
    def set_normalization(self, attr_mean, attr_std, forc_mean, forc_std) -> None:
        for name, value in (("attr_mean", attr_mean), ("attr_std", attr_std), ("forc_mean", forc_mean), ("forc_std", forc_std)):
            getattr(self, name).copy_(torch.as_tensor(value, dtype=getattr(self, name).dtype))

    def normalize_attributes(self, attrs: torch.Tensor) -> torch.Tensor:
        return (attrs - self.attr_mean) / self.attr_std

    def normalize_forcings(self, forc: torch.Tensor) -> torch.Tensor:
        return (forc - self.forc_mean) / self.forc_std

    # -- parameters ----------------------------------------------------------------------------------------------
    def lstm_state_size(self) -> int:
        return self.lstm_hidden if self.dynamic else 0

    def static_parameters(self, attrs: torch.Tensor):
        """``attrs`` (n, A) physical → (dict name → (n, nmul), dict route name → (n,), normalised attrs)."""
        a = self.normalize_attributes(attrs)
        raw = torch.sigmoid(self.mlp(a))
        n = attrs.shape[0]
        nst = len(self.static)
        hbv = raw[:, : nst * self.nmul].reshape(n, nst, self.nmul)
        params = {name: descale(hbv[:, i, :], name) for i, name in enumerate(self.static)}
        route = {name: _descale_route(raw[:, nst * self.nmul + i], name) for i, name in enumerate(ROUTE_NAMES)}
        return params, route, a

    def dynamic_sequence(self, forc: torch.Tensor, attrs_norm: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """``forc`` (T, n, F) physical, returns (dict name → (T, n, nmul), h, c)."""
        if not self.dynamic:
            return {}, h, c
        t_len, n, _ = forc.shape
        x = torch.cat([self.normalize_forcings(forc), attrs_norm.unsqueeze(0).expand(t_len, n, -1)], dim=-1)
        out, (h1, c1) = self.lstm(x, (h.unsqueeze(0), c.unsqueeze(0)))
        raw = torch.sigmoid(self.lstm_head(out)).reshape(t_len, n, len(self.dynamic), self.nmul)
        params = {name: descale(raw[:, :, i, :], name) for i, name in enumerate(self.dynamic)}
        return params, h1[0], c1[0]

    def dynamic_step(self, forc: torch.Tensor, attrs_norm: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        """``forc`` (n, F), returns (dict name → (n, nmul), h, c); the same computation as one sequence step."""
        params, h, c = self.dynamic_sequence(forc.unsqueeze(0), attrs_norm, h, c)
        return {k: v[0] for k, v in params.items()}, h, c


class FixedParameters(nn.Module):
    """Given parameter values: scalars or per-unit values, ``nmul`` 1, no dynamic parameters."""

    def __init__(self, values: dict[str, torch.Tensor], param_names: tuple[str, ...]):
        super().__init__()
        missing = [p for p in param_names if p not in values]
        if missing:
            raise ValueError(f"parameters: missing values for {missing} (expected all of {list(param_names)})")
        self.param_names = tuple(param_names)
        self.static = tuple(param_names)
        self.dynamic: tuple[str, ...] = ()
        self.nmul = 1
        for name in list(param_names) + list(ROUTE_NAMES):
            v = values.get(name, torch.tensor(0.0, dtype=torch.float64))
            self.register_buffer("p_" + name, torch.as_tensor(v, dtype=torch.float64).reshape(-1))

    def lstm_state_size(self) -> int:
        return 0

    def value(self, name: str) -> torch.Tensor:
        return getattr(self, "p_" + name)

    def set_value(self, name: str, value) -> None:
        buf = getattr(self, "p_" + name)
        new = torch.as_tensor(value, dtype=buf.dtype).reshape(-1)
        setattr(self, "p_" + name, new.clone())

    def static_parameters(self, attrs: torch.Tensor):
        n = attrs.shape[0]

        def per_unit(name):
            v = self.value(name).to(attrs.dtype)
            if v.numel() not in (1, n):
                raise ValueError(f"parameter {name}: expected 1 or {n} values (one per unit), got {v.numel()}")
            return v.expand(n) if v.numel() == 1 else v

        params = {name: per_unit(name).unsqueeze(-1) for name in self.static}
        route = {name: per_unit(name) for name in ROUTE_NAMES}
        return params, route, attrs

    def dynamic_sequence(self, forc, attrs_norm, h, c):
        return {}, h, c

    def dynamic_step(self, forc, attrs_norm, h, c):
        return {}, h, c
