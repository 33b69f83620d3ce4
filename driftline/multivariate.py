"""Multivariate drift: how well a PCA fitted on the reference reconstructs each row.

The numeric features are standardised with the reference's means and standard deviations,
projected on the principal components that keep ``DEFAULT_VARIANCE_SHARE`` of the variance,
and projected back; a row's reconstruction error is the Euclidean norm of what is lost. When
the features' correlations change, rows leave the reference's principal subspace and their
errors grow, though no column's own distribution moves (NannyML's data reconstruction
drift). The profile stores the PCA (key ``multivariate``) and the reference's errors as one
more numeric column, ``RECONSTRUCTION_ERROR_COLUMN``, judged like any column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftline import semconv

# The share of the standardised features' variance the kept components explain (NannyML's
# default for its data reconstruction drift).
DEFAULT_VARIANCE_SHARE = 0.65
RECONSTRUCTION_ERROR_COLUMN = semconv.FEATURE_RECONSTRUCTION_ERROR
# Fewer numeric features than this: no PCA (one column is its own univariate test).
MIN_COLUMNS = 2


class MultivariateError(ValueError):
    """A PCA that cannot be fitted or read, and why."""


class CovarianceBuilder:
    """Streams chunks of numeric columns into sums for the mean and covariance; rows with a
    missing value are left out (counted in ``skipped``)."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] | None = None
        self.rows = 0
        self.skipped = 0
        self._sum: np.ndarray | None = None
        self._outer: np.ndarray | None = None

    def add(self, columns: Mapping[str, np.ndarray]) -> None:
        if self.names is None:
            self.names = tuple(columns)
        if not self.names:
            return
        if any(name not in columns for name in self.names):  # a column turned to text
            self.skipped += len(next(iter(columns.values()), ()))
            return
        block = np.column_stack([np.asarray(columns[n], dtype=np.float64) for n in self.names])
        kept = np.isfinite(block).all(axis=1)
        self.skipped += int(kept.size - kept.sum())
        block = block[kept]
        self.rows += block.shape[0]
        total, outer = block.sum(axis=0), block.T @ block
        self._sum = total if self._sum is None else self._sum + total
        self._outer = outer if self._outer is None else self._outer + outer

    def fit(self, variance_share: float = DEFAULT_VARIANCE_SHARE) -> Pca | None:
        """The PCA of the standardised columns; None below two varying columns or rows."""
        if self.names is None or self._sum is None or self._outer is None or self.rows < 2:
            return None
        mean = self._sum / self.rows
        covariance = self._outer / self.rows - np.outer(mean, mean)
        std = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
        varying = std > 1e-12 * np.maximum(np.abs(mean), 1.0)
        if varying.sum() < MIN_COLUMNS:
            return None
        keep = np.flatnonzero(varying)
        correlation = covariance[np.ix_(keep, keep)] / np.outer(std[keep], std[keep])
        values, vectors = np.linalg.eigh(correlation)
        order = np.argsort(values)[::-1]
        values, vectors = np.clip(values[order], 0.0, None), vectors[:, order]
        explained = np.cumsum(values) / values.sum()
        k = int(np.searchsorted(explained, variance_share) + 1)
        k = min(k, len(keep) - 1)  # all components would reconstruct every row exactly
        return Pca(tuple(self.names[i] for i in keep), tuple(mean[keep]), tuple(std[keep]),
                   tuple(tuple(row) for row in vectors[:, :k].T), variance_share,
                   float(explained[k - 1]))


@dataclass(frozen=True, slots=True)
class Pca:
    """The reference's standardisation and kept principal components (rows of
    ``components``, in ``columns`` order); ``explained`` is their share of the variance."""

    columns: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    components: tuple[tuple[float, ...], ...]
    variance_share: float
    explained: float

    def errors(self, block: np.ndarray) -> np.ndarray:
        """Each row's reconstruction error (rows x ``columns``); NaN where a value is
        missing (counted as missing, as any column's)."""
        z = (np.asarray(block, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        c = np.asarray(self.components)
        residual = z - (z @ c.T) @ c
        return np.sqrt(np.einsum("ij,ij->i", residual, residual))

    def column_errors(self, columns: Mapping[str, Any]) -> np.ndarray | None:
        """``errors`` of a chunk given as named columns; None when one is absent."""
        if any(name not in columns for name in self.columns):
            return None
        return self.errors(np.column_stack([np.asarray(columns[n], dtype=np.float64)
                                            for n in self.columns]))

    def derive(self, columns: Sequence[tuple[str, Any]]) -> list[tuple[str, np.ndarray]]:
        """The reconstruction errors as a table derivation (``driftline.derived``): one
        more numeric column over one call's columns, none when the call lacks a column of
        the PCA. The recorder runs it on each model with a PCA attached."""
        errors = self.column_errors(dict(columns))
        return [] if errors is None else [(RECONSTRUCTION_ERROR_COLUMN, errors)]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), "mean": list(self.mean), "std": list(self.std),
                "components": [list(row) for row in self.components],
                "variance_share": self.variance_share, "explained": self.explained}

    @classmethod
    def from_dict(cls, data: Any, where: str = "multivariate") -> Pca:
        try:
            columns = [str(c) for c in data["columns"]]
            mean = [float(v) for v in data["mean"]]
            std = [float(v) for v in data["std"]]
            components = [[float(v) for v in row] for row in data["components"]]
            share, explained = float(data["variance_share"]), float(data["explained"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MultivariateError(f"{where}: needs columns, mean, std, components, "
                                    f"variance_share and explained: {exc}") from exc
        width = len(columns)
        if not (len(mean) == len(std) == width and components
                and all(len(row) == width for row in components)
                and all(math.isfinite(v) for v in (*mean, *std)) and min(std) > 0):
            raise MultivariateError(f"{where}: mean, std and each component must have one "
                                    f"finite value per column ({width}), std above 0")
        return cls(tuple(columns), tuple(mean), tuple(std),
                   tuple(tuple(row) for row in components), share, explained)


PCA_ATTRIBUTE = "_driftline_pca"


def attach(model: Any, pca: Pca | Any) -> Any:
    """Have the instrumentation record ``model``'s rows' reconstruction errors by ``pca`` (a
    ``Pca``, or a profile holding one): multivariate drift in production. Stored on the
    model object, as ``driftline.register`` stores its name; returns the model."""
    found = pca if isinstance(pca, Pca) else getattr(pca, "multivariate", None)
    if not isinstance(found, Pca):
        raise MultivariateError("attach: give a Pca or a profile captured with "
                                "multivariate=True")
    object.__setattr__(model, PCA_ATTRIBUTE, found)
    return model


def attached(model: Any) -> Pca | None:
    found = getattr(model, PCA_ATTRIBUTE, None)
    return found if isinstance(found, Pca) else None


def numeric_columns(columns: Mapping[str, Any], exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The numeric arrays among a chunk's columns (categorical counts are left out)."""
    return {name: values for name, values in columns.items()
            if name not in exclude and isinstance(values, np.ndarray)
            and values.dtype.kind in "iufb"}
