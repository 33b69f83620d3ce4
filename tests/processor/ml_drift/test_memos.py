"""``DecodingMemos``: the one owner of windowing's decoding memos and of when each is
forgotten (issue 15: the memos' six invalidation rules used to be spread over the
processor)."""

from __future__ import annotations

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import ExponentialHistogramDataPoint

from driftline import semconv
from driftline.processor.component.attribute_bytes import attribute_key
from driftline.processor.component.ml_points import resource_text
from driftline.processor.ml_drift import memos
from driftline.processor.ml_drift.memos import DecodingMemos
from driftline.processor.ml_drift.window import StreamKey, Window

KEY = StreamKey("churn", "3", "predict")


def _point(feature: str) -> ExponentialHistogramDataPoint:
    return ExponentialHistogramDataPoint(attributes=[
        KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in {
            semconv.ML_MODEL_NAME: "churn", semconv.ML_MODEL_VERSION: "3",
            semconv.ML_OPERATION: "predict", semconv.ML_FEATURE_NAME: feature}.items()])


def test_a_window_memo_lives_while_its_window_object_does_and_its_window_is_open() -> None:
    kept = DecodingMemos()
    window = Window(KEY, 7)
    memo = kept.window(KEY, 7, window)
    memo.columns.add("age")
    assert kept.window(KEY, 7, window) is memo
    # A rollback or a restore replaces the window object: the memo is rebuilt, empty.
    replaced = kept.window(KEY, 7, Window(KEY, 7))
    assert replaced is not memo and replaced.columns == set()
    kept.forget_before(8)  # window 7 takes no more points
    assert kept.window(KEY, 7, replaced.window) is not replaced


def test_attribute_sets_are_read_once_by_their_bytes_and_forgotten_at_the_bound(
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(memos, "MAX_KNOWN_ATTRIBUTE_SETS", 2)
    kept = DecodingMemos()
    keys = []
    for feature in ("a", "b"):
        point = _point(feature)
        key = attribute_key(point, None)
        assert key is not None
        keys.append(key[0])
        attributes = kept.attributes(point, key)
        assert attributes.values[semconv.ML_FEATURE_NAME] == feature
        assert attributes.stream == ("churn", "3", "predict")
    assert list(kept.known_attributes) == keys
    third = _point("c")
    kept.attributes(third, attribute_key(third, None))  # the bound is reached: all forgotten
    assert len(kept.known_attributes) == 1


def test_the_resource_text_is_kept_for_the_last_resource_bytes_only() -> None:
    kept = DecodingMemos()
    first = [KeyValue(key="service.name", value=AnyValue(string_value="api"))]
    second = [KeyValue(key="service.name", value=AnyValue(string_value="batch"))]
    text = kept.resource_text(first, b"first")
    assert text == resource_text(first) != resource_text(second)
    assert kept.resource_text(second, b"first") == text  # same bytes: the memo answers
    assert kept.resource_text(second, b"second") == resource_text(second)
