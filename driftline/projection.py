"""A fixed, seeded random projection: wide inputs monitored as a few numeric columns.

Images, embeddings and sequences have too many values per row to monitor one by one, so
each row ``x`` (``F`` values) is monitored as ``k`` components ``x @ R`` with ``R`` a
Gaussian matrix scaled by ``1/sqrt(k)`` (a Johnson-Lindenstrauss projection: distances and
norms are preserved in expectation), plus the row's L2 norm, which the projection alone
would blur. ``R`` depends only on (seed, F, k), and those three travel in the reference
profile, so production and reference are projected by the same matrix.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from driftline import semconv

DEFAULT_COMPONENTS = 16
DEFAULT_SEED = 42
# Inputs with more values per row than this are projected; narrower ones are columns as-is.
DEFAULT_MAX_FEATURES = 64
# Names how the matrix is generated; a profile made another way would not be comparable.
METHOD = "gaussian-numpy-default-rng"
# Input widths whose projection matrix is kept; variable-width inputs must not grow memory.
MAX_CACHED_PROJECTIONS = 8


class ProjectionError(ValueError):
    """A projection that cannot be built or applied, with what to change."""


@dataclass(frozen=True, slots=True)
class Projection:
    """Projects ``[N, input_features]`` rows to ``components`` columns plus their L2 norm.

    The matrix comes from ``numpy.random.default_rng(seed).standard_normal`` (PCG64 and the
    ziggurat normal sampler, a stream NumPy has kept stable since 1.17), generated once at
    construction.
    """

    seed: int
    input_features: int
    components: int = DEFAULT_COMPONENTS
    _matrix: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("seed", "input_features", "components"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or isinstance(value, bool):
                raise ProjectionError(f"projection {name}: must be an integer, got {value!r}")
        if self.seed < 0:
            raise ProjectionError(f"projection seed: must be >= 0, got {self.seed}")
        if self.input_features < 1 or self.components < 1:
            raise ProjectionError(
                f"projection shape: input_features and components must be >= 1, got "
                f"{self.input_features} and {self.components}")
        # Component-major, so each component is one contiguous row of the matrix.
        matrix = np.random.default_rng(int(self.seed)).standard_normal(
            (int(self.components), int(self.input_features)))
        matrix /= math.sqrt(self.components)
        matrix.flags.writeable = False
        object.__setattr__(self, "_matrix", matrix)

    @property
    def matrix(self) -> np.ndarray:
        """The read-only ``[components, input_features]`` matrix."""
        return self._matrix

    def column_names(self) -> list[str]:
        """``proj0..proj{k-1}`` then ``l2_norm``: the monitored columns, in order."""
        return [f"{semconv.FEATURE_PROJECTION_PREFIX}{i}" for i in range(self.components)] + [
            semconv.FEATURE_L2_NORM]

    def apply(self, values: Any) -> list[tuple[str, np.ndarray]]:
        """(name, column) for the projected components and the per-row L2 norm.

        ``values`` is ``[N, input_features]`` (``[N, ...]`` is flattened per row). Each row is
        computed alone (``einsum``, not BLAS, whose blocking depends on the batch size), so a
        row projects to the same bits whatever batch it arrives in. A row with NaN or an
        infinity gives non-finite components, which count as missing.
        """
        array = np.asarray(values, dtype=np.float64)
        if array.ndim == 0:
            raise ProjectionError("projection input: expected [N, features] rows, got a scalar")
        rows = array.reshape(array.shape[0], -1)
        if rows.shape[1] != self.input_features:
            raise ProjectionError(
                f"projection input: rows have {rows.shape[1]} values, this projection was "
                f"built for {self.input_features}; build a Projection for this input size")
        components = np.einsum("nf,kf->nk", rows, self._matrix)
        norms = np.sqrt(np.einsum("nf,nf->n", rows, rows))
        names = self.column_names()
        return [*((names[i], components[:, i]) for i in range(self.components)),
                (names[-1], norms)]

    def to_dict(self) -> dict[str, Any]:
        return {"method": METHOD, "seed": int(self.seed),
                "input_features": int(self.input_features), "components": int(self.components)}

    @classmethod
    def from_dict(cls, data: Any, source: str = "projection") -> Projection:
        if not isinstance(data, dict):
            raise ProjectionError(f"{source}: expected an object with seed, input_features "
                                  f"and components, got {type(data).__name__}")
        method = data.get("method", METHOD)
        if method != METHOD:
            raise ProjectionError(f"{source}.method: unknown projection method {method!r}; "
                                  f"this Driftline builds {METHOD!r}")
        try:
            return cls(int(data["seed"]), int(data["input_features"]),
                       int(data.get("components", DEFAULT_COMPONENTS)))
        except KeyError as exc:
            raise ProjectionError(f"{source}: missing field {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise ProjectionError(f"{source}: invalid field: {exc}") from exc


def for_input(input_features: int, *, max_features: int = DEFAULT_MAX_FEATURES,
              seed: int = DEFAULT_SEED, components: int = DEFAULT_COMPONENTS
              ) -> Projection | None:
    """The projection an input of ``input_features`` values per row is monitored through, or
    None when it is narrow enough (``<= max_features``) to be monitored column by column."""
    if input_features <= max_features:
        return None
    return Projection(seed, input_features, components)


class Projections:
    """The projections of one setting (max_features, seed, components), one per input
    width, the matrices of the last ``MAX_CACHED_PROJECTIONS`` widths kept.

    Every path that monitors wide inputs (PyTorch tensors, logged embeddings and sequences,
    profiles) gets its projection here, so the same width projects through the same matrix.
    """

    def __init__(self, max_features: int = DEFAULT_MAX_FEATURES, seed: int = DEFAULT_SEED,
                 components: int = DEFAULT_COMPONENTS) -> None:
        if isinstance(max_features, bool) or not isinstance(max_features, int) \
                or max_features < 0:
            raise ProjectionError(f"projection max_features: must be an integer >= 0, got "
                                  f"{max_features!r}")
        Projection(seed, 1, components)  # validates seed and components now
        self.max_features, self.seed, self.components = max_features, seed, components
        self._cache: OrderedDict[int, Projection] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, int]:
        """Pickled as its settings (Spark ships profile builders to its workers): the
        matrices are derived from the seed and come back on first use."""
        return {"max_features": self.max_features, "seed": self.seed,
                "components": self.components}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.__init__(state["max_features"], state["seed"], state["components"])

    def of_width(self, input_features: int) -> Projection:
        """The projection of rows of ``input_features`` values, whatever their width."""
        with self._lock:
            found = self._cache.get(input_features)
            if found is None:
                found = Projection(self.seed, input_features, self.components)
                self._cache[input_features] = found
                if len(self._cache) > MAX_CACHED_PROJECTIONS:
                    self._cache.popitem(last=False)
            return found

    def for_input(self, input_features: int) -> Projection | None:
        """The projection of rows wider than ``max_features``; None for narrower ones."""
        return None if input_features <= self.max_features else self.of_width(input_features)
