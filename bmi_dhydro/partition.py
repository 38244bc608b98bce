"""Domain decomposition of hydrologic units across MPI ranks.

Everything here is a pure function of its arguments: no MPI, no file system
except the explicit ngen JSON/GeoJSON readers and writer, no randomness.  The
same call gives the same decomposition on every rank, so each rank can compute
the decomposition itself instead of receiving it.

Main entry points
-----------------
``partition_units(ids, n_parts, cost=None, toid=None)``
    Split units (catchments, divides, HRUs) into ``n_parts`` groups balanced
    by cost (unit count by default, or e.g. area).  When a drainage network is
    given (``toid``: unit -> downstream id, where the downstream id may be a
    nexus that itself has a ``toid``), the units are ordered by a depth-first
    walk of the network from the outlets and the groups are contiguous pieces
    of that walk, so hydrologically connected units stay together.  Each cut is
    placed, among the positions whose balance is within ``tolerance`` of the
    best achievable one, where the fewest network links are cut (a cut between
    two basins cuts none).  This is the idea of ngen's ``partitionGenerator``
    (contiguous chunks of a depth-first order of the network) with cost
    balancing and cut-aware cut placement added.

``Decomposition``
    Which rank owns which unit, with the permutation between the global unit
    order and the rank-major order used by ``Scatterv``/``Gatherv`` (see
    ``coupler.mpi``).  Within a rank, units keep their global order.

ngen partition files
--------------------
``read_ngen_partitions`` / ``write_ngen_partitions`` read and write the JSON
format used by NOAA-OWP/ngen for MPI runs::

    {"partitions": [
        {"id": 0, "cat-ids": [...], "nex-ids": [...],
         "remote-connections": [{"mpi-rank": 1, "nex-id": "nex-1",
                                 "cat-id": "cat-4",
                                 "cat-direction": "nex-to-dest_cat"}]},
        ...]}

``ngen_partitions(parts, toid)`` builds those records (nexuses and remote
connections) from a decomposition, following ngen's rules: a partition lists
every nexus upstream or downstream of its catchments; a nexus whose downstream
catchment lives elsewhere gets a ``nex-to-dest_cat`` connection to that rank,
and a partition that owns the downstream catchment of a nexus gets an
``orig_cat-to-nex`` connection for every upstream catchment on another rank.

Partitions ngen can run
-----------------------
ngen master's remote nexus (``HY_PointHydroNexusRemote``, read at dd04bbcc)
posts its MPI receives in two places: ``add_upstream_flow`` (called once per
*local* upstream catchment and step) posts them whenever none are pending, and
``get_downstream_flow`` (once per step) posts them if none are pending and then
waits for them.  When the downstream catchment of a nexus is on rank r, the
nexus has an upstream catchment on another rank *and* two or more upstream
catchments on r, a message that arrives between two local ``add_upstream_flow``
calls completes the first receive and the second call posts another one: the
receiving rank consumes two messages in that step whenever the sending rank
runs ahead, and waits forever for a message that is never sent (observed: the
``gauge_01073000`` domain split 2 ways hung at step 360 of 720).  With at most
one local upstream catchment (or none, or all of them) exactly one receive is
posted per step.  A terminal nexus (no downstream catchment in the domain) fed
from several ranks is not a hang but gives a partial flow on each rank
(NOAA-OWP/ngen#284).

:func:`ngen_partition_risks` lists both patterns for a decomposition;
``decompose(..., ngen_safe=True)`` avoids them (it keeps the best balanced
split when that has none, else moves single catchments to the rank of the
catchment they drain to until none is left; it warns if that fails) and
:func:`ngen_partitions` refuses to write a decomposition that has one.
:func:`write_ngen_partition_file` (also ``python -m bmi_dhydro.partition``)
does all of it from a hydrofabric (GeoJSON pair or GeoPackage).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "NGEN_ORIG_TO_NEX",
    "NGEN_NEX_TO_DEST",
    "partition_units",
    "decompose",
    "Decomposition",
    "count_cut_links",
    "downstream_units",
    "NgenRemoteConnection",
    "NgenPartition",
    "ngen_partitions",
    "read_ngen_partitions",
    "write_ngen_partitions",
    "validate_ngen_partitions",
    "load_ngen_network",
    "ngen_partition_risks",
    "write_ngen_partition_file",
]

NGEN_ORIG_TO_NEX = "orig_cat-to-nex"
NGEN_NEX_TO_DEST = "nex-to-dest_cat"
_DIRECTIONS = (NGEN_ORIG_TO_NEX, NGEN_NEX_TO_DEST)

# values of ``toid`` that mean "no downstream feature" (ngen writes "NA")
_TERMINAL_STRINGS = frozenset({"", "na", "nan", "none", "null"})


_TERMINAL_EXACT = frozenset({"", "NA", "na", "N/A", "nan", "NaN", "None", "none", "null", "NULL"})


def _is_terminal(value: Any) -> bool:
    if value is None:
        return True
    if value.__class__ is str:
        if value in _TERMINAL_EXACT:
            return True
        return len(value) <= 6 and value.strip().lower() in _TERMINAL_STRINGS
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and value.strip().lower() in _TERMINAL_STRINGS:
        return True
    return False


def _show(value: Any, limit: int = 8) -> str:
    """Short repr of a list of offenders for error messages."""
    items = list(value)
    text = ", ".join(repr(v) for v in items[:limit])
    if len(items) > limit:
        text += f", ... ({len(items)} in all)"
    return text


# --------------------------------------------------------------------------- #
# input checks
# --------------------------------------------------------------------------- #


def _check_ids(ids: Iterable[Hashable]) -> list:
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"ids: expected a sequence of unit ids, got a single string {ids!r}")
    try:
        out = list(ids)
    except TypeError:
        raise TypeError(f"ids: expected a sequence of unit ids, got {type(ids).__name__}") from None
    if not out:
        raise ValueError("ids: expected at least one unit id, got an empty sequence")
    if not all(u.__class__ is str for u in out):
        out = [u.item() if isinstance(u, np.generic) else u for u in out]
    try:
        unique = len(set(out)) == len(out)
    except TypeError:
        unique = False
    if unique:
        return out
    seen: dict = {}
    for i, u in enumerate(out):
        try:
            j = seen.setdefault(u, i)
        except TypeError:
            raise TypeError(
                f"ids: unit id at position {i} must be hashable (a string or an integer), "
                f"got {type(u).__name__}"
            ) from None
        if j != i:
            raise ValueError(f"ids: unit {u!r} appears twice (positions {j} and {i}); unit ids must be unique")
    return out  # pragma: no cover - unreachable: a duplicate or an unhashable id raised above


def _check_n_parts(n_parts: Any, n_units: int) -> int:
    if isinstance(n_parts, bool) or not isinstance(n_parts, (int, np.integer)):
        raise TypeError(f"n_parts: expected a positive integer, got {n_parts!r}")
    n = int(n_parts)
    if n < 1:
        raise ValueError(f"n_parts: expected a positive integer, got {n}")
    if n > n_units:
        raise ValueError(
            f"n_parts: cannot split {n_units} unit(s) into {n} non-empty parts; "
            f"use at most {n_units} ranks for this domain"
        )
    return n


def _check_cost(cost: Any, ids: list) -> np.ndarray:
    n = len(ids)
    if cost is None:
        return np.ones(n, dtype=np.float64)
    if isinstance(cost, Mapping):
        missing = [u for u in ids if u not in cost]
        if missing:
            raise ValueError(f"cost: no cost given for unit(s) {_show(missing)}")
        values = [cost[u] for u in ids]
    elif isinstance(cost, (str, bytes)):
        raise TypeError(f"cost: expected one number per unit (sequence, array or mapping), got {cost!r}")
    else:
        values = cost
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"cost: expected one number per unit, could not convert to float ({err})") from None
    if arr.shape != (n,):
        raise ValueError(f"cost: expected one value per unit, shape ({n},), got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"cost: unit {ids[i]!r} has cost {float(arr[i])!r}; expected a finite number >= 0"
            + (f" ({bad.size} bad units in all)" if bad.size > 1 else "")
        )
    if not arr.sum() > 0:
        raise ValueError("cost: all units have zero cost; expected at least one positive cost")
    return arr


def _toid_mapping(toid: Any, ids: list) -> Mapping:
    if isinstance(toid, Mapping):
        return toid
    if isinstance(toid, (str, bytes)):
        raise TypeError(f"toid: expected a mapping id -> downstream id (or one entry per unit), got {toid!r}")
    try:
        values = list(toid)
    except TypeError:
        raise TypeError(f"toid: expected a mapping id -> downstream id, got {type(toid).__name__}") from None
    if len(values) != len(ids):
        raise ValueError(
            f"toid: a sequence must give one downstream id per unit ({len(ids)}), got {len(values)}; "
            "pass a mapping to include nexuses"
        )
    return dict(zip(ids, values))


@dataclass(frozen=True)
class _Network:
    """Units plus the intermediate (non-unit) features they drain through."""

    nodes: list  # node ids: units first (positions 0..n_units-1), then intermediates
    parent: np.ndarray  # downstream node index, -1 at an outlet
    n_units: int
    order: np.ndarray  # depth-first post-order of all nodes (upstream before downstream)
    levels: list  # node indices by distance from their outlet (outlets first)


def _build_network(ids: list, toid: Any) -> _Network:
    mapping = _toid_mapping(toid, ids)
    index: dict = {u: i for i, u in enumerate(ids)}
    nodes = list(ids)
    parent: list[int] = []
    get = mapping.get
    k = 0
    while k < len(nodes):
        node = nodes[k]
        try:
            target = get(node)
        except TypeError:
            target = None
        if isinstance(target, np.generic):
            target = target.item()
        if _is_terminal(target):
            parent.append(-1)
        else:
            try:
                j = index.get(target)
            except TypeError:
                raise TypeError(
                    f"toid: downstream id of {node!r} must be a string or integer, got {type(target).__name__}"
                ) from None
            if j is None:
                j = len(nodes)
                index[target] = j
                nodes.append(target)
            if j == k:
                raise ValueError(f"toid: {node!r} drains into itself; expected a downstream id or 'NA'")
            parent.append(j)
        k += 1
    par = np.asarray(parent, dtype=np.int64)
    order, levels = _postorder(par)
    if order.size != len(nodes):  # nodes on a cycle are never reached from an outlet
        _raise_cycle(nodes, par)
    return _Network(nodes=nodes, parent=par, n_units=len(ids), order=order, levels=levels)


def _raise_cycle(nodes: list, parent: np.ndarray) -> None:
    state = [0] * len(nodes)  # 0 new, 1 on current path, 2 done
    par = parent.tolist()
    for start in range(len(nodes)):
        if state[start]:
            continue
        path = []
        v = start
        while v >= 0 and state[v] == 0:
            state[v] = 1
            path.append(v)
            v = par[v]
        if v >= 0 and state[v] == 1:  # came back onto the current path
            cycle = path[path.index(v):] + [v]
            raise ValueError(
                "toid: the drainage network has a cycle: " + " -> ".join(repr(nodes[c]) for c in cycle)
            )
        for p in path:
            state[p] = 2
    raise RuntimeError("internal error: network traversal incomplete but no cycle found")  # pragma: no cover


def _postorder(parent: np.ndarray, child_key: np.ndarray | None = None) -> tuple[np.ndarray, list]:
    """Depth-first post-order of the forest given by ``parent`` (upstream first).

    Outlets are visited in node order, upstream branches in node order (or
    by increasing ``child_key``, ties in node order); every
    subtree is a contiguous run of the result.  Also returns the levels (node
    indices by distance from the outlet).  Computed level by level with
    numpy (subtree sizes bottom-up, then positions top-down) instead of a
    Python-level walk.  Nodes on a cycle are never reached and are missing
    from the result.
    """
    n = parent.size
    if child_key is None:
        children_order = np.argsort(parent, kind="stable")  # outlets first, then grouped by parent
    else:
        children_order = np.lexsort((child_key, parent))
    n_roots = int(np.count_nonzero(parent < 0))
    roots = children_order[:n_roots]
    kids = children_order[n_roots:]
    n_kids = np.bincount(parent[kids], minlength=n).astype(np.int64)
    first_kid = np.zeros(n, dtype=np.int64)
    first_kid[1:] = np.cumsum(n_kids)[:-1]
    levels = []
    frontier = roots
    while frontier.size:
        levels.append(frontier)
        c = n_kids[frontier]
        total = int(c.sum())
        if total == 0:
            break
        # positions of every child of every frontier node, frontier order kept
        offsets = np.repeat(first_kid[frontier] - (np.cumsum(c) - c), c) + np.arange(total)
        frontier = kids[offsets]
    reached = sum(int(lv.size) for lv in levels)
    if reached != n:
        return (np.concatenate(levels) if levels else np.zeros(0, dtype=np.int64)), levels
    size = np.ones(n, dtype=np.int64)
    for lv in reversed(levels[1:]):
        np.add.at(size, parent[lv], size[lv])
    start = np.zeros(n, dtype=np.int64)
    start[roots] = np.cumsum(size[roots]) - size[roots]
    for lv in levels[1:]:
        p = parent[lv]
        before = np.cumsum(size[lv]) - size[lv]  # exclusive running sum over the level
        new_group = np.ones(lv.size, dtype=bool)
        new_group[1:] = p[1:] != p[:-1]  # siblings are contiguous in a level
        base = before[new_group][np.cumsum(new_group) - 1]
        start[lv] = start[p] + (before - base)
    order = np.empty(n, dtype=np.int64)
    order[start + size - 1] = np.arange(n)
    return order, levels


# --------------------------------------------------------------------------- #
# partitioning
# --------------------------------------------------------------------------- #


def _choose_cuts(
    seq_cost: np.ndarray, seq_is_unit: np.ndarray, crossing: np.ndarray, n_parts: int, tolerance: float
) -> np.ndarray:
    """Cut positions 0 < p_1 < ... < p_{n-1} < L in a sequence of length L.

    Part k is seq[p_k:p_{k+1}].  Every part gets at least one unit.  For each
    cut, candidates are the positions whose prefix cost is within
    ``tolerance * mean part cost`` of the best reachable deviation from the
    ideal prefix ``k * total / n``; among them the one crossing the fewest
    links wins, then the better balanced one, then the earlier one.
    """
    L = seq_cost.size
    prefix = np.concatenate(([0.0], np.cumsum(seq_cost)))
    ucount = np.concatenate(([0], np.cumsum(seq_is_unit.astype(np.int64))))
    total = prefix[-1]
    n_units = int(ucount[-1])
    mean = total / n_parts
    slack = tolerance * mean
    cuts = np.zeros(n_parts - 1, dtype=np.int64)
    prev_units = 0
    for k in range(1, n_parts):
        # feasible positions: at least one more unit than the previous cut,
        # and enough units left for the remaining n_parts - k parts
        lo = int(np.searchsorted(ucount, prev_units + 1, side="left"))
        hi = int(np.searchsorted(ucount, n_units - (n_parts - k), side="right")) - 1
        lo = max(lo, 1)
        hi = min(hi, L - 1)
        if hi < lo:  # pragma: no cover - excluded by n_parts <= n_units
            raise RuntimeError("internal error: no feasible cut position")
        target = k * total / n_parts
        dev = np.abs(prefix[lo:hi + 1] - target)
        best = dev.min()
        window = np.flatnonzero(dev <= best + slack + 1e-12 * max(total, 1.0))
        cand = window + lo
        # lexsort: last key is primary
        pick = np.lexsort((cand, dev[window], crossing[cand]))[0]
        p = int(cand[pick])
        cuts[k - 1] = p
        prev_units = int(ucount[p])
    return cuts


def partition_units(
    ids: Sequence[Hashable],
    n_parts: int,
    cost: Sequence[float] | Mapping[Hashable, float] | np.ndarray | None = None,
    toid: Mapping[Hashable, Any] | Sequence[Any] | None = None,
    *,
    tolerance: float = 0.02,
    ngen_safe: bool = False,
) -> list[list]:
    """Split units into ``n_parts`` non-empty groups balanced by cost.

    Parameters
    ----------
    ids:
        Unit ids (unique, hashable; typically strings such as ``"cat-27"``).
    n_parts:
        Number of groups (MPI ranks), ``1 <= n_parts <= len(ids)``.
    cost:
        Work per unit (one finite value >= 0 per unit, as a sequence aligned
        with ``ids`` or a mapping id -> cost), e.g. catchment area or number of
        regrid weights.  ``None`` balances the unit count.
    toid:
        Optional drainage network: mapping from an id to its downstream id.
        Downstream ids that are not units (nexuses, outlets) are followed
        through their own ``toid`` entry, so a hydrofabric ``cat -> nex -> cat``
        network can be passed as one mapping holding both tables.  ``None``,
        NaN, ``""`` and ``"NA"`` mean "no downstream".  A sequence aligned with
        ``ids`` is accepted as well.  Without a network the input order is kept
        and split into contiguous runs.
    tolerance:
        Balance slack, as a fraction of the mean part cost, that a cut may give
        up to cut fewer network links (0 = best balance only).
    ngen_safe:
        Avoid the splits ngen master cannot run (see the module docstring and
        :func:`ngen_partition_risks`), at the cost of balance where needed;
        needs ``toid`` with the nexuses.  Warns if no such split exists.

    Returns
    -------
    list of lists
        ``parts[r]`` are the ids of part ``r``, in input order.  Deterministic:
        the same input always gives the same result.
    """
    ids = _check_ids(ids)
    assignment = _assign(ids, n_parts, cost, toid, tolerance, ngen_safe)
    return [[ids[i] for i in np.flatnonzero(assignment == r)] for r in range(int(n_parts))]


def _assign(ids: list, n_parts: Any, cost: Any, toid: Any, tolerance: Any, ngen_safe: bool = False) -> np.ndarray:
    """Rank of each unit (``ids`` already checked); see :func:`partition_units`."""
    n = _check_n_parts(n_parts, len(ids))
    costs = _check_cost(cost, ids)
    try:
        tol = float(tolerance)
    except (TypeError, ValueError):
        raise TypeError(f"tolerance: expected a number >= 0, got {tolerance!r}") from None
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"tolerance: expected a finite number >= 0, got {tolerance!r}")

    if ngen_safe and toid is None:
        raise ValueError("ngen_safe: needs toid, the catchment -> nexus -> catchment network")
    if n == 1:
        return np.zeros(len(ids), dtype=np.int64)
    if toid is None:
        seq = np.arange(len(ids), dtype=np.int64)
        seq_is_unit = np.ones(len(ids), dtype=bool)
        crossing = np.zeros(len(ids) + 1, dtype=np.int64)
        seq_cost = costs[seq]
        return _split_sequence(seq, seq_is_unit, seq_cost, crossing, len(ids), n, tol)
    net = _build_network(ids, toid)
    seq, pos, seq_is_unit, seq_cost, crossing = _sequence(net, net.order, costs)
    assignment = _split_sequence(seq, seq_is_unit, seq_cost, crossing, len(ids), n, tol)
    if not ngen_safe:
        return assignment
    risks = _ngen_risks(net, assignment)
    if not risks:
        return assignment
    # The best balanced split has a nexus ngen cannot run.  Repair it by moving single catchments
    # (_ngen_repair), and likewise the split of the post-order that visits each nexus's largest upstream subtree
    # last (a cut inside that subtree leaves at most one upstream catchment with the downstream one, which ngen
    # runs); keep the one with the fewest problems left, then the best balance, then the fewest cut links.
    node_cost = np.zeros(len(net.nodes))
    node_cost[: net.n_units] = costs
    subtree = node_cost.copy()
    for lv in reversed(net.levels[1:]):
        np.add.at(subtree, net.parent[lv], subtree[lv])
    best_key = None
    for order in (net.order, _postorder(net.parent, child_key=subtree)[0]):
        seq, pos, seq_is_unit, seq_cost, crossing = _sequence(net, order, costs)
        a = _ngen_repair(net, _split_sequence(seq, seq_is_unit, seq_cost, crossing, len(ids), n, tol), costs, n)
        part_cost = np.bincount(a, weights=costs, minlength=n)
        key = (len(_ngen_risks(net, a)), round(float(part_cost.max()), 9), _count_cut(net, a))
        if best_key is None or key < best_key:
            best_key, assignment = key, a
    if best_key[0]:
        risks = _ngen_risks(net, assignment)
        warnings.warn(f"no {n}-way split of this network found that avoids ngen's remote-nexus problems; "
                      f"{len(risks)} remain: " + "; ".join(risks[:5]), stacklevel=3)
    return assignment


def _ngen_repair(net: _Network, assignment: np.ndarray, costs: np.ndarray, n: int) -> np.ndarray:
    """Move single catchments until no nexus is one ngen cannot run (or nothing more can move).

    A nexus whose downstream catchment's rank r holds two or more, but not
    all, of its upstream catchments gets the others moved to r: only those
    catchments move, not their upstream areas, so the nexus above each of them
    now sends to r from wherever its own upstream catchments are (none of which
    was on r in a post-order split).  A terminal nexus fed from several ranks
    gets its upstream catchments moved to the rank holding most of their cost.
    A move that would empty a rank is not made.
    """
    a = assignment.copy()
    count = np.bincount(a, minlength=n)
    groups = [(down, contrib) for _, down, contrib in _nexus_groups(net) if contrib.size >= 2]
    for _ in range(len(groups) + 1):
        moved = False
        for down, contrib in groups:
            ranks = a[contrib]
            if 0 <= down < net.n_units:
                r = int(a[down])
                local = int(np.count_nonzero(ranks == r))
                if not (2 <= local < ranks.size):
                    continue
            else:
                if np.all(ranks == ranks[0]):
                    continue
                r = int(np.argmax(np.bincount(ranks, weights=costs[contrib], minlength=n)))
            movers = contrib[ranks != r]
            leaving = np.bincount(a[movers], minlength=n)
            if np.any((leaving > 0) & (leaving >= count)):
                continue
            count -= leaving
            count[r] += movers.size
            a[movers] = r
            moved = True
        if not moved:
            break
    return a


def _sequence(net: _Network, order: np.ndarray, costs: np.ndarray):
    """The arrays a split of the post-order ``order`` needs: (seq, pos, is_unit, cost, crossing links per cut)."""
    seq = order
    seq_is_unit = seq < net.n_units
    L = seq.size
    pos = np.empty(L, dtype=np.int64)
    pos[seq] = np.arange(L)
    # only links that end (possibly through nexuses) at a unit carry data
    # between units; links into outlet nexuses never need to cross ranks
    leads = np.zeros(L, dtype=bool)
    leads[: net.n_units] = True
    for lv in net.levels[1:]:  # downstream levels first
        leads[lv] |= leads[net.parent[lv]]
    child = np.flatnonzero((net.parent >= 0) & leads[np.maximum(net.parent, 0)])
    a = pos[child]  # child position; its parent comes later in post-order
    b = pos[net.parent[child]]
    # a link child->parent crosses every cut p with a < p <= b
    diff = np.bincount(a + 1, minlength=L + 2)[: L + 2] - np.bincount(b + 1, minlength=L + 2)[: L + 2]
    crossing = np.cumsum(diff)[: L + 1]
    seq_cost = np.where(seq_is_unit, costs[np.minimum(seq, net.n_units - 1)], 0.0)
    return seq, pos, seq_is_unit, seq_cost, crossing


def _split_sequence(seq, seq_is_unit, seq_cost, crossing, n_units, n, tol) -> np.ndarray:
    """Rank of each unit when the sequence is cut into ``n`` contiguous parts (:func:`_choose_cuts`)."""
    cuts = _choose_cuts(seq_cost, seq_is_unit, crossing, n, tol)
    part_of_pos = np.searchsorted(cuts, np.arange(seq.size), side="right")
    unit_pos = np.flatnonzero(seq_is_unit)
    assignment = np.empty(n_units, dtype=np.int64)
    assignment[seq[unit_pos]] = part_of_pos[unit_pos]
    return assignment


def _count_cut(net: _Network, assignment: np.ndarray) -> int:
    """Units whose nearest downstream unit (through non-unit nodes) is on another rank."""
    down = np.full(len(net.nodes), -1, dtype=np.int64)
    for lv in net.levels[1:]:  # downstream first: a node's nearest downstream unit is its parent or the parent's
        p = net.parent[lv]
        down[lv] = np.where(p < net.n_units, p, down[p])
    d = down[: net.n_units]
    has = d >= 0
    return int(np.count_nonzero(assignment[has] != assignment[d[has]]))


def _nexus_groups(net: _Network):
    """For each non-unit node with unit contributors: (node, its downstream node or -1, contributor unit indices)."""
    units = np.flatnonzero(net.parent[: net.n_units] >= net.n_units)
    nex = net.parent[units]
    order = np.argsort(nex, kind="stable")
    units, nex = units[order], nex[order]
    starts = np.flatnonzero(np.r_[True, nex[1:] != nex[:-1]]) if nex.size else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], nex.size].astype(np.int64)
    for a, b in zip(starts.tolist(), ends.tolist()):
        node = int(nex[a])
        yield node, int(net.parent[node]), units[a:b]


def _ngen_risks(net: _Network, assignment: np.ndarray) -> list[str]:
    """The nexuses of a decomposition that ngen master cannot run (see the module docstring)."""
    out = []
    for node, down, contrib in _nexus_groups(net):
        ranks = assignment[contrib]
        names = [str(net.nodes[c]) for c in contrib]
        if 0 <= down < net.n_units:
            r = int(assignment[down])
            local = int(np.count_nonzero(ranks == r))
            if local >= 2 and local < ranks.size:
                remote = sorted({int(x) for x in ranks[ranks != r]})
                out.append(f"nexus {str(net.nodes[node])!r}: downstream catchment {str(net.nodes[down])!r} and "
                           f"{local} of its {ranks.size} upstream catchments ({_show(n for n, x in zip(names, ranks) if x == r)}) on "
                           f"rank {r}, the others on rank(s) {remote}: ngen's receiving nexus posts a receive per "
                           "local upstream catchment and hangs")
        elif np.unique(ranks).size > 1:
            out.append(f"terminal nexus {str(net.nodes[node])!r}: upstream catchments on ranks "
                       f"{sorted({int(x) for x in ranks})}: ngen writes a partial flow on each (NOAA-OWP/ngen#284)")
    return out


def ngen_partition_risks(parts: "Sequence[Sequence[Hashable]] | Decomposition | Sequence[NgenPartition]",
                         toid: Mapping[Hashable, Any]) -> list[str]:
    """Why ngen master cannot run a decomposition: one message per offending nexus, empty when it can.

    ``parts``: a :class:`Decomposition`, lists of catchment ids per rank, or
    ngen partition records; ``toid`` holds the ``cat -> nex`` and
    ``nex -> cat`` links.  Flags (1) a nexus whose downstream catchment's rank
    holds two or more, but not all, of its upstream catchments (ngen's remote
    nexus then posts two receives in a step when the sender runs ahead, and
    hangs), and (2) a terminal nexus fed from more than one rank.
    """
    if isinstance(parts, Decomposition):
        dec = parts
    else:
        plist = list(parts)
        if plist and all(isinstance(p, NgenPartition) for p in plist):
            dec = Decomposition.from_ngen(plist)
        else:
            dec = Decomposition.from_parts([u for part in plist for u in part], plist)
    return _ngen_risks(_build_network(list(dec.ids), toid), dec.assignment)


def decompose(
    ids: Sequence[Hashable],
    n_parts: int,
    cost: Sequence[float] | Mapping[Hashable, float] | np.ndarray | None = None,
    toid: Mapping[Hashable, Any] | Sequence[Any] | None = None,
    *,
    tolerance: float = 0.02,
    ngen_safe: bool = False,
) -> "Decomposition":
    """``partition_units`` wrapped in a :class:`Decomposition` over ``ids``."""
    ids = _check_ids(ids)
    return Decomposition(ids, _assign(ids, n_parts, cost, toid, tolerance, ngen_safe), n_parts=n_parts)


def downstream_units(ids: Sequence[Hashable], toid: Mapping[Hashable, Any] | Sequence[Any]) -> list:
    """For each unit, the nearest downstream *unit* (through nexuses), or ``None``."""
    ids = _check_ids(ids)
    net = _build_network(ids, toid)
    down = np.full(len(net.nodes), -2, dtype=np.int64)  # -2 unknown, -1 none
    out = []
    for u in range(net.n_units):
        path = []
        v = int(net.parent[u])
        while v >= 0 and v >= net.n_units and down[v] == -2:
            path.append(v)
            v = int(net.parent[v])
        res = v if (v < 0 or v < net.n_units) else int(down[v])
        for p in path:
            down[p] = res
        out.append(None if res < 0 else ids[res])
    return out


def count_cut_links(parts: "Sequence[Sequence[Hashable]] | Decomposition", toid: Mapping | Sequence) -> int:
    """Number of units whose nearest downstream unit lives in another part.

    Each such link is one nexus value that has to cross ranks every time step.
    """
    if isinstance(parts, Decomposition):
        dec = parts
    else:
        ids = [u for part in parts for u in part]
        dec = Decomposition.from_parts(ids, parts)
    down = downstream_units(list(dec.ids), toid)
    index = {u: i for i, u in enumerate(dec.ids)}
    cut = 0
    for i, d in enumerate(down):
        if d is not None and dec.assignment[index[d]] != dec.assignment[i]:
            cut += 1
    return cut


# --------------------------------------------------------------------------- #
# Decomposition
# --------------------------------------------------------------------------- #


class Decomposition:
    """Ownership of units by ranks, and the row order used on the wire.

    ``ids`` is the global unit order (the order of the serial run and of the
    output file).  ``assignment[i]`` is the rank owning unit ``i``.  Rank
    ``r`` holds the units ``indices(r)`` (ascending global positions, so its
    rows are in global order too).  The *rank-major* order concatenates the
    ranks' rows: ``order = concat(indices(0), indices(1), ...)`` with
    ``counts``/``displs`` as used by ``Scatterv``/``Gatherv``::

        rank_major = dec.to_rank_major(global_array)   # on the root, before scatter
        global_array = dec.from_rank_major(gathered)   # on the root, after gather
    """

    __slots__ = ("_ids", "_assignment", "_n_parts", "_counts", "_displs", "_order", "_index")

    def __init__(self, ids: Sequence[Hashable], assignment: Sequence[int] | np.ndarray, n_parts: int | None = None):
        ids = _check_ids(ids)
        try:
            a = np.asarray(assignment)
        except Exception as err:  # noqa: BLE001 - report any conversion problem the same way
            raise TypeError(f"assignment: expected one integer rank per unit ({err})") from None
        if a.shape != (len(ids),):
            raise ValueError(f"assignment: expected one rank per unit, shape ({len(ids)},), got shape {a.shape}")
        if a.size and a.dtype.kind not in "iu":
            if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
                a = a.astype(np.int64)
            else:
                raise TypeError(f"assignment: expected integer ranks, got dtype {a.dtype}")
        a = a.astype(np.int64)
        if n_parts is None:
            n_parts = int(a.max()) + 1
        if isinstance(n_parts, bool) or not isinstance(n_parts, (int, np.integer)) or n_parts < 1:
            raise ValueError(f"n_parts: expected a positive integer, got {n_parts!r}")
        n_parts = int(n_parts)
        bad = np.flatnonzero((a < 0) | (a >= n_parts))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"assignment: unit {ids[i]!r} is assigned to rank {int(a[i])}; expected 0..{n_parts - 1}"
            )
        a.setflags(write=False)
        self._ids = tuple(ids)
        self._assignment = a
        self._n_parts = n_parts
        counts = np.bincount(a, minlength=n_parts).astype(np.int64)
        displs = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        order = np.argsort(a, kind="stable").astype(np.int64)
        for arr in (counts, displs, order):
            arr.setflags(write=False)
        self._counts, self._displs, self._order = counts, displs, order
        self._index = None

    # -- constructors ------------------------------------------------------ #
    @classmethod
    def from_parts(cls, ids: Sequence[Hashable], parts: Sequence[Sequence[Hashable]]) -> "Decomposition":
        """Build from ``parts[r]`` = ids owned by rank ``r``; each id exactly once."""
        ids = _check_ids(ids)
        if isinstance(parts, (str, bytes)) or not isinstance(parts, Sequence):
            raise TypeError(f"parts: expected a list of lists of unit ids, got {type(parts).__name__}")
        index = {u: i for i, u in enumerate(ids)}
        assignment = np.full(len(ids), -1, dtype=np.int64)
        for r, part in enumerate(parts):
            if isinstance(part, (str, bytes)):
                raise TypeError(f"parts[{r}]: expected a list of unit ids, got the string {part!r}")
            for u in part:
                if isinstance(u, np.generic):
                    u = u.item()
                i = index.get(u)
                if i is None:
                    raise ValueError(f"parts[{r}]: unit {u!r} is not one of the domain's ids")
                if assignment[i] >= 0:
                    raise ValueError(f"parts[{r}]: unit {u!r} is already in part {assignment[i]}")
                assignment[i] = r
        missing = np.flatnonzero(assignment < 0)
        if missing.size:
            raise ValueError(f"parts: unit(s) {_show(ids[i] for i in missing)} are in no part")
        return cls(ids, assignment, n_parts=max(len(parts), 1))

    @classmethod
    def from_ngen(
        cls, partitions: Sequence["NgenPartition"], ids: Sequence[Hashable] | None = None
    ) -> "Decomposition":
        """Build from ngen partition records (rank = partition ``id``).

        ``ids`` fixes the global unit order (e.g. the order of the forcing
        file); by default it is the partitions' ``cat-ids`` in rank order.
        """
        validate_ngen_partitions(partitions, check_remote=False)
        ordered = sorted(partitions, key=lambda p: p.id)
        parts = [list(p.cat_ids) for p in ordered]
        if ids is None:
            ids = [u for part in parts for u in part]
        return cls.from_parts(ids, parts)

    # -- properties -------------------------------------------------------- #
    @property
    def ids(self) -> tuple:
        return self._ids

    @property
    def n_units(self) -> int:
        return len(self._ids)

    @property
    def n_parts(self) -> int:
        return self._n_parts

    @property
    def assignment(self) -> np.ndarray:
        """Rank of each unit, in global order (read-only int64)."""
        return self._assignment

    @property
    def counts(self) -> np.ndarray:
        """Units per rank (read-only int64), the ``counts`` for Scatterv/Gatherv."""
        return self._counts

    @property
    def displs(self) -> np.ndarray:
        """First rank-major row of each rank (read-only int64)."""
        return self._displs

    @property
    def order(self) -> np.ndarray:
        """Global positions in rank-major order (read-only int64)."""
        return self._order

    @property
    def parts(self) -> list[list]:
        return [self.units(r) for r in range(self._n_parts)]

    def _check_rank(self, rank: int) -> int:
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < self._n_parts:
            raise ValueError(f"rank: expected an integer 0..{self._n_parts - 1}, got {rank!r}")
        return int(rank)

    def indices(self, rank: int) -> np.ndarray:
        """Global positions of the units owned by ``rank`` (ascending)."""
        r = self._check_rank(rank)
        return self._order[self._displs[r]: self._displs[r] + self._counts[r]]

    def units(self, rank: int) -> list:
        """Ids owned by ``rank``, in global order."""
        return [self._ids[i] for i in self.indices(rank)]

    def rank_of(self, unit: Hashable) -> int:
        if self._index is None:
            self._index = {u: i for i, u in enumerate(self._ids)}
        i = self._index.get(unit)
        if i is None:
            raise KeyError(f"unit {unit!r} is not in this decomposition")
        return int(self._assignment[i])

    # -- array reordering -------------------------------------------------- #
    def _check_axis_len(self, array: np.ndarray, axis: int, name: str) -> np.ndarray:
        arr = np.asarray(array)
        if arr.ndim == 0:
            raise ValueError(f"{name}: expected an array with a unit axis, got a scalar")
        if arr.shape[axis] != self.n_units:
            raise ValueError(
                f"{name}: expected {self.n_units} rows (one per unit) along axis {axis}, got shape {arr.shape}"
            )
        return arr

    def to_rank_major(self, array: Any, axis: int = 0) -> np.ndarray:
        """Reorder a global-order array into rank-major order (a new array)."""
        arr = self._check_axis_len(array, axis, "to_rank_major")
        return np.take(arr, self._order, axis=axis)

    def from_rank_major(self, array: Any, axis: int = 0) -> np.ndarray:
        """Inverse of :meth:`to_rank_major` (a new array)."""
        arr = self._check_axis_len(array, axis, "from_rank_major")
        inverse = np.empty_like(self._order)
        inverse[self._order] = np.arange(self.n_units)
        return np.take(arr, inverse, axis=axis)

    def local_rows(self, array: Any, rank: int, axis: int = 0) -> np.ndarray:
        """Rows of a global-order array owned by ``rank`` (a new array)."""
        arr = self._check_axis_len(array, axis, "local_rows")
        return np.take(arr, self.indices(rank), axis=axis)

    # -- diagnostics -------------------------------------------------------- #
    def part_costs(self, cost: Sequence[float] | Mapping[Hashable, float] | np.ndarray | None = None) -> np.ndarray:
        costs = _check_cost(cost, list(self._ids))
        return np.bincount(self._assignment, weights=costs, minlength=self._n_parts)

    def imbalance(self, cost: Sequence[float] | Mapping[Hashable, float] | np.ndarray | None = None) -> float:
        """max part cost / mean part cost (1.0 = perfect balance)."""
        pc = self.part_costs(cost)
        return float(pc.max() / pc.mean())

    def to_ngen(self, toid: Mapping[Hashable, Any]) -> list["NgenPartition"]:
        return ngen_partitions(self.parts, toid)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decomposition):
            return NotImplemented
        return (
            self._ids == other._ids
            and self._n_parts == other._n_parts
            and np.array_equal(self._assignment, other._assignment)
        )

    def __hash__(self) -> int:
        return hash((self._ids, self._n_parts, self._assignment.tobytes()))

    def __repr__(self) -> str:
        return f"Decomposition(n_units={self.n_units}, n_parts={self._n_parts}, counts={self._counts.tolist()})"


# --------------------------------------------------------------------------- #
# ngen partition JSON
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class NgenRemoteConnection:
    """One entry of ``remote-connections`` in an ngen partition file."""

    mpi_rank: int
    nex_id: str
    cat_id: str
    cat_direction: str  # NGEN_ORIG_TO_NEX or NGEN_NEX_TO_DEST

    def to_dict(self) -> dict:
        return {
            "mpi-rank": self.mpi_rank,
            "nex-id": self.nex_id,
            "cat-id": self.cat_id,
            "cat-direction": self.cat_direction,
        }


@dataclass(frozen=True)
class NgenPartition:
    """One entry of ``partitions`` in an ngen partition file (``id`` = MPI rank)."""

    id: int
    cat_ids: tuple
    nex_ids: tuple
    remote_connections: tuple = ()

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "cat-ids": list(self.cat_ids),
            "nex-ids": list(self.nex_ids),
            "remote-connections": [rc.to_dict() for rc in self.remote_connections],
        }


def _expect_keys(obj: Any, keys: tuple, where: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"{where}: missing key(s) {_show(missing)}; found {_show(obj.keys())}")


def _expect_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    return value


def _expect_str_list(value: Any, where: str) -> tuple:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list of id strings, got {type(value).__name__}")
    for j, v in enumerate(value):
        if not isinstance(v, str):
            raise ValueError(f"{where}[{j}]: expected an id string, got {v!r}")
    return tuple(value)


def _parse_ngen(data: Any, source: str) -> list[NgenPartition]:
    _expect_keys(data, ("partitions",), source)
    raw = data["partitions"]
    if not isinstance(raw, list):
        raise ValueError(f"{source}: 'partitions' must be a list, got {type(raw).__name__}")
    out = []
    for i, p in enumerate(raw):
        where = f"{source}: partitions[{i}]"
        _expect_keys(p, ("id", "cat-ids", "nex-ids", "remote-connections"), where)
        pid = _expect_int(p["id"], f"{where}.id")
        cats = _expect_str_list(p["cat-ids"], f"{where}.cat-ids")
        nexs = _expect_str_list(p["nex-ids"], f"{where}.nex-ids")
        rcs_raw = p["remote-connections"]
        if rcs_raw == "":  # boost::property_tree writes an empty list as ""
            rcs_raw = []
        if not isinstance(rcs_raw, list):
            raise ValueError(f"{where}.remote-connections: expected a list, got {type(rcs_raw).__name__}")
        rcs = []
        for j, rc in enumerate(rcs_raw):
            w = f"{where}.remote-connections[{j}]"
            _expect_keys(rc, ("mpi-rank", "nex-id", "cat-id", "cat-direction"), w)
            rank = _expect_int(rc["mpi-rank"], f"{w}.mpi-rank")
            for key in ("nex-id", "cat-id", "cat-direction"):
                if not isinstance(rc[key], str):
                    raise ValueError(f"{w}.{key}: expected a string, got {rc[key]!r}")
            if rc["cat-direction"] not in _DIRECTIONS:
                raise ValueError(
                    f"{w}.cat-direction: expected {_DIRECTIONS[0]!r} or {_DIRECTIONS[1]!r}, "
                    f"got {rc['cat-direction']!r}"
                )
            rcs.append(NgenRemoteConnection(rank, rc["nex-id"], rc["cat-id"], rc["cat-direction"]))
        out.append(NgenPartition(pid, cats, nexs, tuple(rcs)))
    return out


def validate_ngen_partitions(partitions: Sequence[NgenPartition], *, check_remote: bool = True) -> None:
    """Raise ``ValueError`` listing every inconsistency of an ngen partition set.

    Checks: ids are ``0..n-1`` in order (ngen uses the id as the MPI rank and
    the position as the index), no catchment is in two partitions or twice in
    one, and (``check_remote``) each remote connection points to an existing
    other rank that owns ``cat-id``, names a nexus listed by both partitions,
    and every ``nex-to-dest_cat`` send has the matching ``orig_cat-to-nex``
    receive on the destination rank.
    """
    problems: list[str] = []
    if isinstance(partitions, (str, bytes)) or not isinstance(partitions, Sequence):
        raise TypeError(f"partitions: expected a list of NgenPartition, got {type(partitions).__name__}")
    if not partitions:
        raise ValueError("partitions: expected at least one partition, got none")
    for i, p in enumerate(partitions):
        if not isinstance(p, NgenPartition):
            raise TypeError(f"partitions[{i}]: expected NgenPartition, got {type(p).__name__}")
        if p.id != i:
            problems.append(f"partition at position {i} has id {p.id}; ngen expects ids 0..n-1 in order")
    owner: dict = {}
    for p in partitions:
        seen: set = set()
        for c in p.cat_ids:
            if c in seen:
                problems.append(f"partition {p.id} lists catchment {c!r} twice")
                continue
            seen.add(c)
            if c in owner:
                problems.append(f"catchment {c!r} is in partition {owner[c]} and in partition {p.id}")
            else:
                owner[c] = p.id
        if not p.cat_ids:
            problems.append(f"partition {p.id} has no catchments")
    if check_remote:
        by_id = {p.id: p for p in partitions}
        for p in partitions:
            nex_here = set(p.nex_ids)
            for j, rc in enumerate(p.remote_connections):
                w = f"partition {p.id} remote-connections[{j}]"
                if rc.cat_direction not in _DIRECTIONS:
                    problems.append(f"{w}: cat-direction {rc.cat_direction!r} is not one of {_DIRECTIONS}")
                if rc.mpi_rank not in by_id:
                    problems.append(f"{w}: mpi-rank {rc.mpi_rank} is not a partition id")
                    continue
                if rc.mpi_rank == p.id:
                    problems.append(f"{w}: mpi-rank {rc.mpi_rank} is the partition itself")
                if owner.get(rc.cat_id) != rc.mpi_rank:
                    problems.append(
                        f"{w}: catchment {rc.cat_id!r} is owned by partition {owner.get(rc.cat_id)}, "
                        f"not by mpi-rank {rc.mpi_rank}"
                    )
                if rc.nex_id not in nex_here:
                    problems.append(f"{w}: nexus {rc.nex_id!r} is not in this partition's nex-ids")
                if rc.nex_id not in set(by_id[rc.mpi_rank].nex_ids):
                    problems.append(f"{w}: nexus {rc.nex_id!r} is not in nex-ids of partition {rc.mpi_rank}")
                if rc.cat_direction == NGEN_NEX_TO_DEST:
                    matched = any(
                        x.nex_id == rc.nex_id and x.mpi_rank == p.id and x.cat_direction == NGEN_ORIG_TO_NEX
                        for x in by_id[rc.mpi_rank].remote_connections
                    )
                    if not matched:
                        problems.append(
                            f"{w}: send of nexus {rc.nex_id!r} to rank {rc.mpi_rank} has no matching "
                            f"{NGEN_ORIG_TO_NEX!r} receive from rank {p.id} there"
                        )
    if problems:
        head = f"invalid ngen partitions ({len(problems)} problem(s)):\n  "
        raise ValueError(head + "\n  ".join(problems[:50]) + ("\n  ..." if len(problems) > 50 else ""))


def read_ngen_partitions(path: str | os.PathLike | Any, *, validate: bool = True) -> list[NgenPartition]:
    """Read an ngen partition JSON file (path or open text file)."""
    if hasattr(path, "read"):
        source = getattr(path, "name", "<partition file>")
        text = path.read()
    else:
        source = os.fspath(path)
        try:
            with open(source, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"ngen partition file not found: {source}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON ({err})") from None
    parts = _parse_ngen(data, str(source))
    if validate:
        try:
            validate_ngen_partitions(parts)
        except ValueError as err:
            raise ValueError(f"{source}: {err}") from None
    return parts


def write_ngen_partitions(
    partitions: Sequence[NgenPartition], path: str | os.PathLike | Any, *, validate: bool = True
) -> None:
    """Write partitions as ngen partition JSON (path or open text file)."""
    parts = list(partitions)
    if validate:
        validate_ngen_partitions(parts)
    lines = ["{", '    "partitions": [']
    for i, p in enumerate(parts):
        d = p.to_dict()
        rc = ",\n                ".join(json.dumps(x) for x in d["remote-connections"])
        block = (
            f'        {{"id": {d["id"]},\n'
            f'         "cat-ids": {json.dumps(d["cat-ids"])},\n'
            f'         "nex-ids": {json.dumps(d["nex-ids"])},\n'
            f'         "remote-connections": [' + (f"\n                {rc}\n             " if rc else "") + "]}"
        )
        lines.append(block + ("," if i < len(parts) - 1 else ""))
    lines += ["    ]", "}"]
    text = "\n".join(lines) + "\n"
    json.loads(text)  # never write something that does not parse
    if hasattr(path, "write"):
        path.write(text)
    else:
        tmp = os.fspath(path) + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, os.fspath(path))


def ngen_partitions(
    parts: "Sequence[Sequence[str]] | Decomposition", toid: Mapping[Hashable, Any], *, check: bool = True
) -> list[NgenPartition]:
    """ngen partition records for a decomposition of catchments.

    ``toid`` must hold the ``cat -> nex`` links and the ``nex -> cat`` links
    (ngen's catchment and nexus tables).  A catchment draining straight into
    another catchment cannot be written in ngen's format and is an error.
    ``check``: refuse a decomposition that ngen master cannot run
    (:func:`ngen_partition_risks`; make one with ``decompose(..., ngen_safe=True)``).
    """
    if isinstance(parts, Decomposition):
        parts = parts.parts
    parts = [list(p) for p in parts]
    if not isinstance(toid, Mapping):
        raise TypeError(f"toid: expected a mapping id -> downstream id, got {type(toid).__name__}")
    if check:
        risks = ngen_partition_risks(parts, toid)
        if risks:
            raise ValueError(f"ngen master cannot run this split ({len(risks)} problem(s); decompose(..., "
                             "ngen_safe=True) avoids them where possible):\n  " + "\n  ".join(risks[:20]))
    owner: dict = {}
    for r, part in enumerate(parts):
        for c in part:
            if c in owner:
                raise ValueError(f"parts[{r}]: catchment {c!r} is already in part {owner[c]}")
            owner[c] = r
    # nexus -> its upstream catchments (in toid order), catchment -> upstream nexuses
    origins: dict = {}
    up_nex: dict = {}
    for key, val in toid.items():
        if _is_terminal(val):
            continue
        if key in owner:  # a catchment
            if val in owner:
                raise ValueError(
                    f"toid: catchment {key!r} drains directly into catchment {val!r}; ngen partition "
                    "files need a nexus between catchments"
                )
            origins.setdefault(val, []).append(key)
        elif val in owner:  # a nexus draining into a catchment
            up_nex.setdefault(val, []).append(key)

    def destination(nex: Any) -> Any:
        d = toid.get(nex)
        return d if (not _is_terminal(d) and d in owner) else None

    out = []
    for r, part in enumerate(parts):
        nexs: list = []
        seen: set = set()
        for c in part:
            down = toid.get(c)
            for nex in up_nex.get(c, []) + ([] if _is_terminal(down) else [down]):
                if nex not in seen:
                    seen.add(nex)
                    nexs.append(nex)
        rcs = []
        for nex in nexs:
            dest = destination(nex)
            if dest is not None and owner[dest] != r:
                rcs.append(NgenRemoteConnection(owner[dest], str(nex), str(dest), NGEN_NEX_TO_DEST))
            if dest is not None and owner[dest] == r:
                for o in origins.get(nex, []):
                    if owner[o] != r:
                        rcs.append(NgenRemoteConnection(owner[o], str(nex), str(o), NGEN_ORIG_TO_NEX))
        out.append(NgenPartition(r, tuple(str(c) for c in part), tuple(str(x) for x in nexs), tuple(rcs)))
    return out


def load_ngen_network(
    catchments: str | os.PathLike, nexuses: str | os.PathLike | None = None
) -> tuple[list[str], dict, np.ndarray | None]:
    """Read an ngen hydrofabric: GeoJSON (catchment and optional nexus FeatureCollections) or a GeoPackage.

    Returns ``(catchment_ids, toid, areasqkm)``: ids in file order, one
    ``toid`` mapping holding both tables, and the ``areasqkm`` property as an
    array (``None`` when any catchment lacks it).  Property names are matched
    case-insensitively (``toid``/``toID``).  A GeoPackage (``.gpkg``) is read
    as ngen reads it: catchments from the ``divides`` layer (id
    ``divide_id``), nexuses from the ``nexus`` layer of ``nexuses`` or, when
    that is not given, of the same file; a nexus ``toid`` naming a divide by
    its flowpath id (``wb-N``) is mapped to that divide's catchment id, as
    ngen's ``update_ids("id")`` does.
    """

    def features(path: str | os.PathLike, what: str) -> list[tuple[str, dict]]:
        src = os.fspath(path)
        if src.lower().endswith(".gpkg"):
            return gpkg_features(src, what)
        try:
            with open(src, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise FileNotFoundError(f"{what} file not found: {src}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{src}: not valid JSON ({err})") from None
        if not isinstance(data, dict) or not isinstance(data.get("features"), list):
            raise ValueError(f"{src}: expected a GeoJSON FeatureCollection with a 'features' list")
        out = []
        for i, feat in enumerate(data["features"]):
            props = {str(k).lower(): v for k, v in (feat.get("properties") or {}).items()}
            fid = props.get("id", feat.get("id"))
            if fid is None:
                raise ValueError(f"{src}: feature {i} has no 'id' (property or feature id)")
            out.append((str(fid), props))
        return out

    def gpkg_features(src: str, what: str) -> list[tuple[str, dict]]:
        from ._extras import require

        pyogrio = require("pyogrio", "geo", f"reading the {what}s of the GeoPackage {os.path.basename(src)}")
        require("pyogrio.raw", "geo", f"reading the {what}s of the GeoPackage {os.path.basename(src)}")
        if not os.path.isfile(src):
            raise FileNotFoundError(f"{what} file not found: {src}")
        layer = "divides" if what == "catchment" else "nexus"
        if layer not in {str(name) for name, _ in pyogrio.list_layers(src)}:
            raise ValueError(f"{src}: no {layer!r} layer (ngen reads catchments from 'divides', nexuses from 'nexus')")
        meta, _, _, fields = pyogrio.raw.read(src, layer=layer, read_geometry=False)
        names = [str(n).lower() for n in meta["fields"]]
        key = "divide_id" if what == "catchment" and "divide_id" in names else "id"
        if key not in names:
            raise ValueError(f"{src}: layer {layer!r} has no {key!r} field")
        out = []
        for row in zip(*fields):
            props = {n: (v.item() if isinstance(v, np.generic) else v) for n, v in zip(names, row)}
            if what == "catchment" and key == "divide_id":
                alias[str(props.get("id"))] = str(props["divide_id"])
            out.append((str(props[key]), props))
        return out

    alias: dict = {}
    cats = features(catchments, "catchment")
    ids = [fid for fid, _ in cats]
    toid: dict = {}
    areas = []
    for fid, props in cats:
        toid[fid] = props.get("toid")
        areas.append(props.get("areasqkm"))
    if nexuses is None and os.fspath(catchments).lower().endswith(".gpkg"):
        nexuses = catchments
    if nexuses is not None:
        for fid, props in features(nexuses, "nexus"):
            down = props.get("toid")
            toid[fid] = alias.get(down, down) if isinstance(down, str) else down
    area = None
    if all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in areas):
        area = np.asarray(areas, dtype=np.float64)
    return ids, toid, area


def write_ngen_partition_file(
    catchments: str | os.PathLike,
    n_parts: int,
    out: str | os.PathLike,
    nexuses: str | os.PathLike | None = None,
    *,
    cost: str = "area",
    tolerance: float = 0.02,
) -> list[NgenPartition]:
    """Write an ngen partition file for a hydrofabric that ngen master runs to completion.

    Reads the network (:func:`load_ngen_network`), splits it into ``n_parts``
    balanced by ``cost`` (``"area"``: ``areasqkm``; ``"count"``: catchments)
    with ``ngen_safe=True``, and writes the partitions; raises if no such split
    exists (see :func:`ngen_partition_risks`).  Returns the written records.
    """
    ids, toid, area = load_ngen_network(catchments, nexuses)
    if cost not in ("area", "count"):
        raise ValueError(f"cost: expected 'area' or 'count', got {cost!r}")
    if cost == "area" and area is None:
        raise ValueError(f"{os.fspath(catchments)}: some catchments lack 'areasqkm'; use cost='count'")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ngen_partitions below raises with the full list
        dec = decompose(ids, n_parts, cost=area if cost == "area" else None, toid=toid, tolerance=tolerance,
                        ngen_safe=True)
    parts = ngen_partitions(dec, toid)
    write_ngen_partitions(parts, out)
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bmi_dhydro.partition HYDROFABRIC N -o partitions.json [--nexus NEXUS.geojson]``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m bmi_dhydro.partition",
                                 description="Write an ngen partition file that ngen master runs to completion.")
    ap.add_argument("catchments", help="catchment GeoJSON, or a hydrofabric GeoPackage (divides + nexus layers)")
    ap.add_argument("n_parts", type=int, help="number of partitions (MPI ranks)")
    ap.add_argument("-o", "--out", required=True, help="partition JSON to write")
    ap.add_argument("--nexus", default=None,
                    help="nexus GeoJSON (or GeoPackage); default: the catchments file if it is a .gpkg")
    ap.add_argument("--cost", choices=("area", "count"), default="area", help="what to balance (default: area)")
    args = ap.parse_args(argv)
    parts = write_ngen_partition_file(args.catchments, args.n_parts, args.out, args.nexus, cost=args.cost)
    for p in parts:
        print(f"rank {p.id}: {len(p.cat_ids)} catchments, {len(p.remote_connections)} remote connections")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
