"""What windowing remembers between batches so it decodes less: one object owning every
memo and the rules that invalidate them.

Clients send the same resources, attribute sets and series request after request; reading
them again costs microseconds per point. The memos, and when each is forgotten:

- attribute sets by their wire bytes (``PointAttributes``): equal bytes are equal
  attributes; all are forgotten at ``MAX_KNOWN_ATTRIBUTE_SETS``;
- per metric, the attribute keys of the last request's points, in order, as guesses for the
  next (``attribute_key``); all are forgotten past ``MAX_KEPT_ATTRIBUTE_KEYS``;
- the last resource's text by its bytes: replaced when other bytes arrive;
- per open window (``WindowMemo``): the columns it holds and the resource list adding the
  same resource bytes again leaves unchanged; valid while that ``Window`` object is the open
  window of its key and index (a rollback or a restore replaces the object, so the memo is
  rebuilt), forgotten when the window stops taking points (``forget_before``).

Used under the ingest lock of the ``Windowing`` that owns it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from driftline import semconv
from driftline.processor.component.attribute_bytes import AttributeKey
from driftline.processor.component.ml_points import attributes_of, resource_text
from driftline.processor.ml_drift.window import StreamKey, Window

_KEY_ATTRIBUTES = (semconv.ML_MODEL_NAME, semconv.ML_MODEL_VERSION, semconv.ML_OPERATION)
# Attribute sets remembered with what they determine (``PointAttributes``); at this many the
# memory is cleared. The same few sets repeat request after request.
MAX_KNOWN_ATTRIBUTE_SETS = 8192
# Attribute keys of the last request's points kept as guesses for the next (``attribute_key``);
# past this many the memory is cleared.
MAX_KEPT_ATTRIBUTE_KEYS = 65_536


@dataclass(frozen=True, slots=True)
class PointAttributes:
    """A point's attributes as text and what windowing reads from them: built once per
    attribute set and found again by the attributes' wire bytes (reading the attributes of
    every point costs about 1 us each)."""

    values: dict[str, str]
    stream: tuple[str, str, str]  # model name, model version, operation ("" when absent)
    framework: str | None

    @classmethod
    def of(cls, values: dict[str, str]) -> PointAttributes:
        return cls(values, tuple(values.get(a, "") for a in _KEY_ATTRIBUTES),  # type: ignore[arg-type]
                   values.get(semconv.ML_MODEL_FRAMEWORK))


@dataclass(slots=True)
class WindowMemo:
    """What windowing remembers about one open window between batches, so that per batch it
    neither copies the resource attributes again nor checks a column against
    ``max_features`` again. Valid while ``window`` is the open window of its key and index
    (a rollback or a restore replaces the object)."""

    window: Window
    columns: set[str]  # columns the window holds
    # The window holds ``max_features`` columns: any other is the overflow column. Columns
    # are only added to a window, so this stays true while the memo is valid.
    full: bool = False
    # The window's resource list that adding the resource of these wire bytes left as it
    # was: adding that resource again changes nothing while the window keeps this list.
    resource: list[KeyValue] | None = None
    resource_bytes: bytes = b""


class DecodingMemos:
    """The memos above and their invalidation (see the module docstring)."""

    def __init__(self) -> None:
        # Attribute wire bytes -> what they determine.
        self.known_attributes: dict[bytes, PointAttributes] = {}
        # (stream prefix, metric name, data kind) -> its points' attribute keys, in order.
        self._last_keys: dict[tuple[str, str, str], list[AttributeKey | None]] = {}
        self._kept_keys = 0
        # The last resource's text (``resource_text``) by its wire bytes.
        self._resource_text: tuple[bytes, str] = (b"", "")
        # (stream, index) of an open window -> what windowing remembers about it.
        self._windows: dict[tuple[StreamKey, int], WindowMemo] = {}

    def attributes(self, point: Any, key: AttributeKey | None) -> PointAttributes:
        """``point``'s attributes, not met yet by their wire bytes ``key``
        (``attribute_key``), read and kept under that key: equal bytes are equal attributes,
        and finding the bytes costs less than reading the attributes."""
        attributes = PointAttributes.of(attributes_of(point))
        if key is not None:
            if len(self.known_attributes) >= MAX_KNOWN_ATTRIBUTE_SETS:
                self.known_attributes.clear()
            self.known_attributes[key[0]] = attributes
        return attributes

    def last_keys(self, keys_of: tuple[str, str, str]) -> list[AttributeKey | None]:
        """The attribute keys of the last request's points of a metric, in order."""
        return self._last_keys.get(keys_of, [])

    def keep_keys(self, keys_of: tuple[str, str, str], previous: list[AttributeKey | None],
                  keys: list[AttributeKey | None]) -> None:
        """Keep a metric's attribute keys, in order, as the guesses for its next request."""
        kept = self._kept_keys - len(previous) + len(keys)
        if kept > MAX_KEPT_ATTRIBUTE_KEYS:
            self._last_keys.clear()
            kept = len(keys)
        self._last_keys[keys_of] = keys
        self._kept_keys = kept

    def resource_text(self, resource: Sequence[KeyValue], resource_bytes: bytes) -> str:
        """``resource_text(resource)``, kept for the last resource: the same one (equal
        bytes) usually sends request after request."""
        known_bytes, text = self._resource_text
        if known_bytes != resource_bytes or not text:
            text = resource_text(resource)
            self._resource_text = (resource_bytes, text)
        return text

    def window(self, key: StreamKey, index: int, window: Window) -> WindowMemo:
        """The memo of the open window ``window`` of ``key`` and ``index``; a new one when
        that window object replaced the one the memo was made for."""
        memo = self._windows.get((key, index))
        if memo is None or memo.window is not window:
            memo = self._windows[(key, index)] = WindowMemo(window, set())
        return memo

    def forget_before(self, first_open: int) -> None:
        """Windows before ``first_open`` take no more points (late ones go to an open one)."""
        self._windows = {k: v for k, v in self._windows.items() if k[1] >= first_open}

    @staticmethod
    def add_resource(memo: WindowMemo, resource: Sequence[KeyValue],
                     resource_bytes: bytes) -> None:
        """``window.add_resource(resource)``, skipped when it is known to change nothing
        (it copies and compares every attribute: about 6 us per window and batch)."""
        window = memo.window
        if (memo.resource is not None and memo.resource is window.resource
                and memo.resource_bytes == resource_bytes):
            return
        before = window.resource
        window.add_resource(resource)
        if before is not None and window.resource is before:  # unchanged: a fixed point
            memo.resource, memo.resource_bytes = before, resource_bytes
