"""Compare two profiles column by column: the offline twin of the processor's ``ml_drift``.

``driftline compare REFERENCE CURRENT`` reads each side as a profile JSON or profiles a CSV or
Parquet file on the fly, then scores every column both sides share with the same statistics
and thresholds the processor uses (``driftline.drift``): the first score per column is the
verdict, the others are context. The dataset verdict counts feature columns only, as the
processor does.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftline import calibration as calib
from driftline import drift, estimation, profile
from driftline.derived import DATA_TYPE_SEQUENCE, DATA_TYPE_TEXT
from driftline.profile import KIND_NUMERIC, ROLE_FEATURE, ColumnProfile, Profile, ProfileError

PROFILE_SUFFIXES = (".json",)
DATA_SUFFIXES = (".csv", ".txt", ".parquet", ".pq")
DEFAULT_MODEL = ""  # a data file's profile is named after the file unless told otherwise

# Called with the rows read so far while a data file is profiled (progress bars).
RowsCallback = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class ColumnResult:
    """One column's verdict (the first statistic of ``driftline.drift``) and its context."""

    column: str
    kind: str
    role: str
    method: str
    score: float
    threshold: float
    drifted: bool
    p_value: float | None
    # The other statistics for the column (e.g. PSI beside Wasserstein), not part of the verdict.
    context: tuple[drift.DriftScore, ...] = ()


@dataclass(frozen=True, slots=True)
class Comparison:
    """Per-column verdicts plus the dataset verdict over feature columns."""

    columns: tuple[ColumnResult, ...]
    drift_share: float
    dataset_drifted: bool
    share_threshold: float
    # (column, reason) for columns present on one side only, of different kinds, or empty.
    skipped: tuple[tuple[str, str], ...] = ()
    # Performance of the current side estimated from the reference's calibration (when the
    # reference has one and the current side has the probability columns), and realised
    # (when the current side also has the labels). See docs/estimation.md.
    estimated_performance: tuple[estimation.Estimate, ...] = ()
    realised_performance: tuple[tuple[str, float], ...] = ()

    def features(self) -> list[ColumnResult]:
        return [c for c in self.columns if c.role == ROLE_FEATURE]


# --- loading ------------------------------------------------------------------------------


def is_profile_path(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in PROFILE_SUFFIXES


def load_side(path: str | os.PathLike[str], *, model: str = DEFAULT_MODEL,
              like: Profile | None = None, on_rows: RowsCallback | None = None,
              reference: Profile | None = None) -> Profile:
    """A profile JSON as is, or the profile of a CSV/Parquet file built now.

    For a data file the column kinds come from the file itself (so a column that turned from
    numbers into text shows up as a kind change); roles and the model's name come from
    ``like`` (the other side's profile) when given, so a prediction column stays one. With
    ``reference`` (the current side of a comparison), its text and sequence columns are read
    as production is: text descriptors against the reference's vocabulary.
    """
    path = Path(path)
    if not path.is_file():
        raise ProfileError(f"{path}: no such file")
    if is_profile_path(path):
        return profile.load(path)
    if path.suffix.lower() not in DATA_SUFFIXES:
        raise ProfileError(f"{path}: unsupported file type '{path.suffix}' (expected a profile "
                           ".json, or a .csv or .parquet data file)")
    name = model or (like.model_name if like is not None else path.stem)
    version = like.model_version if like is not None else ""
    data_types = vocabularies = None
    if reference is not None:
        data_types = {**dict.fromkeys(reference.text, DATA_TYPE_TEXT),
                      **dict.fromkeys(reference.sequences, DATA_TYPE_SEQUENCE)}
        vocabularies = reference.vocabularies()
    try:
        built = profile.profile_file(path, model=name, version=version, on_rows=on_rows,
                                     data_types=data_types, vocabularies=vocabularies,
                                     **_output_columns(path, like))
    except ProfileError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        # pandas' ParserError and pyarrow's ArrowInvalid are ValueErrors.
        raise ProfileError(f"{path}: cannot read data file: {exc}") from exc
    if not built.columns:
        raise ProfileError(f"{path}: no columns")
    return _with_roles_of(built, like) if like is not None else built


def _output_columns(path: Path, like: Profile | None) -> dict[str, Any]:
    """How to read the model's outputs from a data file, as the other side's calibration
    names them: its probability columns when the file has them all, its prediction and
    target columns when the file has them, and its classes; and its multivariate PCA when
    the file has its columns."""
    if like is None:
        return {}
    names = set(_file_columns(path))
    found: dict[str, Any] = {}
    if like.multivariate is not None and set(like.multivariate.columns) <= names:
        found["multivariate"] = like.multivariate
    calibration = like.calibration
    if calibration is None or not set(calibration.probability_columns) <= names:
        return found
    found.update(probability_columns=list(calibration.probability_columns),
                 classes=[c.label for c in calibration.classes])
    if calibration.prediction_column in names:
        found["prediction_column"] = calibration.prediction_column
    if calibration.target_column in names:
        found["target_column"] = calibration.target_column
    return found


def _file_columns(path: Path) -> list[str]:
    """The column names of a CSV or Parquet file (or directory), without reading rows."""
    if path.suffix.lower() in profile.CSV_SUFFIXES:
        import pandas as pd

        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def _performance(reference: Profile, current: Profile
                 ) -> tuple[tuple[estimation.Estimate, ...], tuple[tuple[str, float], ...]]:
    """The current side's estimated and realised performance, where they can be had."""
    if reference.calibration is None or current.calibration is None:
        return (), ()
    estimated: list[estimation.Estimate] = []
    if reference.calibration.labelled:
        estimated, _ = estimation.estimate(reference.calibration,
                                           estimation.calibration_points(current.calibration))
    return tuple(estimated), tuple(calib.realised(current.calibration).items())


def _with_roles_of(built: Profile, like: Profile) -> Profile:
    columns = {}
    for name, column in built.columns.items():
        known = like.columns.get(name)
        role = known.role if known is not None else column.role
        columns[name] = column if role == column.role else _replace_role(column, role)
    return dataclasses.replace(built, columns=columns, projection=like.projection)


def _replace_role(column: ColumnProfile, role: str) -> ColumnProfile:
    return dataclasses.replace(column, role=role)


def load_pair(reference: str | os.PathLike[str], current: str | os.PathLike[str], *,
              model: str = DEFAULT_MODEL,
              on_rows: Callable[[str], RowsCallback | None] | None = None
              ) -> tuple[Profile, Profile]:
    """Both sides; a profile JSON side is read first so a data-file side takes its roles.

    ``on_rows(path)`` may return a callback fed with the rows read from that data file.
    """
    def callback(path: str | os.PathLike[str]) -> RowsCallback | None:
        return on_rows(str(path)) if on_rows is not None and not is_profile_path(path) else None

    if is_profile_path(current) and not is_profile_path(reference):
        cur = load_side(current, model=model)
        ref = load_side(reference, model=model, like=cur, on_rows=callback(reference))
        return ref, cur
    ref = load_side(reference, model=model, on_rows=callback(reference))
    cur = load_side(current, model=model, like=ref, on_rows=callback(current), reference=ref)
    return ref, cur


# --- comparing ----------------------------------------------------------------------------


def _column_scores(ref: ColumnProfile, cur: ColumnProfile,
                   thresholds: drift.Thresholds) -> list[drift.DriftScore] | str:
    """The scores for one column, or why there are none."""
    if ref.kind != cur.kind:
        return f"{ref.kind} in reference, {cur.kind} in current"
    if ref.kind == KIND_NUMERIC:
        if ref.histogram is None or not ref.histogram.count:
            return "no values in reference"
        if cur.histogram is None or not cur.histogram.count:
            return "no values in current"
        if thresholds.judges_as_categories(ref.name, ref.values):
            assert ref.values is not None
            counts = drift.value_categories(ref.values, cur.histogram, cur.values)
            return drift.categorical_scores(ref.name, *counts, thresholds)
        return drift.numeric_scores(ref.name, ref.histogram, cur.histogram, thresholds,
                                    reference_std=ref.std)
    reference = ref.category_counts()
    current = cur.category_counts()
    if not sum(reference.values()):
        return "no values in reference"
    if not sum(current.values()):
        return "no values in current"
    return drift.categorical_scores(ref.name, reference, drift.fold_unknown(current, reference),
                                    thresholds)


def _result(column: ColumnProfile, scores: list[drift.DriftScore]) -> ColumnResult:
    verdict = scores[0]
    return ColumnResult(column.name, column.kind, column.role, verdict.method,
                        float(verdict.score), float(verdict.threshold), bool(verdict.drifted),
                        p_value(verdict), tuple(scores[1:]))


def p_value(score: drift.DriftScore) -> float | None:
    """The score's p-value where its method has one (KS, chi-square), else None."""
    value = getattr(score, "p_value", None)
    return None if value is None else float(value)


def compare(reference: Profile, current: Profile,
            thresholds: drift.Thresholds | None = None) -> Comparison:
    """Score every column of ``reference`` that ``current`` also has."""
    thresholds = thresholds or drift.Thresholds()
    results: list[ColumnResult] = []
    skipped: list[tuple[str, str]] = []
    for name, ref in reference.columns.items():
        cur = current.columns.get(name)
        if cur is None:
            skipped.append((name, "not in current"))
            continue
        scores = _column_scores(ref, cur, thresholds)
        if isinstance(scores, str):
            skipped.append((name, scores))
        else:
            results.append(_result(ref, scores))
    skipped += [(name, "not in reference") for name in current.columns
                if name not in reference.columns]
    features = [r for r in results if r.role == ROLE_FEATURE]
    share = sum(r.drifted for r in features) / len(features) if features else 0.0
    # No compared feature gives no dataset drift rather than a share that reads as "fine".
    drifted = bool(features) and share >= thresholds.dataset_share
    return Comparison(tuple(results), share, drifted, thresholds.dataset_share, tuple(skipped),
                      *_performance(reference, current))


# --- output -------------------------------------------------------------------------------


def _number(value: float) -> float | None:
    """JSON has no NaN or infinity: such a value is written as null."""
    return value if math.isfinite(value) else None


def _score_dict(method: str, score: float, threshold: float, drifted: bool,
                p: float | None) -> dict[str, Any]:
    data: dict[str, Any] = {"method": method, "score": _number(score),
                            "threshold": _number(threshold), "drifted": drifted}
    if p is not None:
        data["p_value"] = _number(p)
    return data


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The ``driftline compare --json`` document."""
    columns = []
    for result in comparison.columns:
        item: dict[str, Any] = {"column": result.column, "kind": result.kind,
                                "role": result.role}
        item.update(_score_dict(result.method, result.score, result.threshold, result.drifted,
                                result.p_value))
        item["context"] = [_score_dict(s.method, s.score, s.threshold, s.drifted, p_value(s))
                           for s in result.context]
        columns.append(item)
    document: dict[str, Any] = {
        "columns": columns,
        "dataset_drifted": comparison.dataset_drifted,
        "drift_share": comparison.drift_share,
        "drift_share_threshold": comparison.share_threshold,
        "skipped": [{"column": name, "reason": reason} for name, reason in comparison.skipped],
    }
    if comparison.estimated_performance:
        document["estimated_performance"] = {
            e.metric: {"value": _number(e.value), "lower": _number(e.lower),
                       "upper": _number(e.upper)} for e in comparison.estimated_performance}
    if comparison.realised_performance:
        document["realised_performance"] = {
            metric: _number(value) for metric, value in comparison.realised_performance}
    return document
