"""End to end over the real OTLP wire (issue 19): a service using only the explicit API
(``monitor().log`` and ``@observe``), its recorder exporting through the official SDK's
OTLP/HTTP exporter to a real processor process, gets drift verdicts: the model whose
amounts and review lengths shifted drifts on those columns (text judged by its
descriptors), the model fed from the training distribution drifts on none."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

from driftline import profile, semconv
from driftline.exporters.file.exporter import read_metrics
from driftline.instrumentation import Recorder
from driftline.instrumentation.explicit import Explicit
from tests._collector import LOOPBACK, PROTOCOL_HTTP, running_collector

REFERENCE_ROWS = 6000
PRODUCTION_ROWS = 2000
BATCH_ROWS = 100
WAIT_S = 30.0
NEVER_S = 3600.0  # the test flushes by hand
COMMON_WORDS = [f"word{i}" for i in range(150)] + ["café", "naïve", "déjà"]
SHIFTED, STEADY = "reviews-shifted", "reviews-steady"


def _reviews(rng: np.random.Generator, rows: int, words: tuple[int, int]) -> list[str]:
    out = []
    for _ in range(rows):
        if rng.random() < 0.03:
            out.append("")
            continue
        tokens = list(rng.choice(COMMON_WORDS, rng.integers(*words)))
        if rng.random() < 0.5:
            tokens.append(f"rare{rng.integers(10**9)}")
        out.append(" ".join(tokens))
    return out


def _data(rng: np.random.Generator, rows: int, shifted: bool = False
          ) -> tuple[dict[str, object], np.ndarray]:
    amount = rng.normal(70.0 if shifted else 50.0, 10.0, rows)
    data = {"amount": amount,
            "plan": rng.choice(["basic", "pro", "team"], rows, p=[0.5, 0.3, 0.2]),
            "review": _reviews(rng, rows, (25, 40) if shifted else (4, 12))}
    return data, np.where(amount > 55.0, "refund", "keep")


def _verdicts(path: Path) -> dict[str, dict[str, int]]:
    """model -> column -> the last ml.drift.detected of its verdict method."""
    found: dict[str, dict[str, int]] = {}
    if not path.exists():
        return found
    for request in read_metrics(path):
        for resource_metrics in request.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != semconv.ML_DRIFT_DETECTED:
                        continue
                    for point in metric.gauge.data_points:
                        attrs = {kv.key: kv.value.string_value for kv in point.attributes}
                        found.setdefault(attrs[semconv.ML_MODEL_NAME], {})[
                            attrs[semconv.ML_FEATURE_NAME]] = point.as_int
    return found


@pytest.mark.integration
def test_a_service_using_only_the_explicit_api_gets_drift_verdicts(tmp_path: Path) -> None:
    rng = np.random.default_rng(1919)
    reference_data, reference_labels = _data(rng, REFERENCE_ROWS)
    profiles = tmp_path / "profiles"
    for model in (SHIFTED, STEADY):
        profile.save(profile.capture(reference_data, reference_labels, model=model,
                                     version="1", data_types={"review": "text"}),
                     profiles / f"{model}.json")
    reference = profile.load(profiles / f"{SHIFTED}.json")
    output = tmp_path / "metrics.jsonl"
    config = {
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"{LOOPBACK}:0"}}}},
        "processors": {"ml_drift": {"profiles": str(profiles), "window": "2s",
                                    "grace": "0.5s", "min_rows": 100}},
        "exporters": {"file": {"path": str(output), "flush_interval": 0}},
        "service": {"pipelines": {"metrics": {
            "receivers": ["otlp"], "processors": ["ml_drift"], "exporters": ["file"]}}},
    }
    with running_collector(config, tmp_path) as collector:
        exporter = OTLPMetricExporter(
            endpoint=f"http://{collector.endpoints[PROTOCOL_HTTP]}/v1/metrics")
        recorder = Recorder(exporter, export_interval_s=NEVER_S)
        api = Explicit(recorder=recorder)

        # The shifted model reports through monitor().log, batch by batch ...
        data, labels = _data(rng, PRODUCTION_ROWS, shifted=True)
        for start in range(0, PRODUCTION_ROWS, BATCH_ROWS):
            rows = slice(start, start + BATCH_ROWS)
            with api.monitor(SHIFTED, version="1", reference=reference) as mon:
                mon.log(data["amount"][rows], name="amount")
                mon.log(data["plan"][rows], name="plan")
                mon.log(data["review"][rows], name="review", data_type="text")
                mon.log(labels[rows], role="prediction")

        # ... the steady one through @observe, row by row as dicts.
        @api.observe(model=SHIFTED.replace("shifted", "steady"), version="1",
                     data_types={"review": "text"}, reference=reference)
        def predict(row: dict[str, object]) -> str:
            return "refund" if float(row["amount"]) > 55.0 else "keep"

        data, _ = _data(rng, PRODUCTION_ROWS)
        for i in range(PRODUCTION_ROWS):
            predict({"amount": float(data["amount"][i]), "plan": str(data["plan"][i]),
                     "review": data["review"][i]})
        assert recorder.force_flush()
        recorder.shutdown()

        deadline = time.monotonic() + WAIT_S
        while len(_verdicts(output)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
    verdicts = _verdicts(output)
    assert set(verdicts) == {SHIFTED, STEADY}, collector.stderr()
    text_columns = {f"review.{d}" for d in (semconv.TEXT_CHARS, semconv.TEXT_TOKENS,
                                            semconv.TEXT_OOV_SHARE, semconv.TEXT_EMPTY,
                                            semconv.TEXT_NON_ASCII_SHARE)}
    columns = {"amount", "plan", semconv.ML_PREDICTION_CLASS_METRIC} | text_columns
    assert set(verdicts[STEADY]) == columns, verdicts
    assert set(verdicts[SHIFTED]) == columns, verdicts
    assert not any(verdicts[STEADY].values()), verdicts[STEADY]
    shifted = verdicts[SHIFTED]
    assert shifted["amount"] == 1 and shifted["review.chars"] == 1 \
        and shifted["review.tokens"] == 1, shifted
    assert shifted["plan"] == 0, shifted
