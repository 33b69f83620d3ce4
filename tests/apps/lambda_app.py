"""A Lambda-like function for the serverless test, run as ``python -m tests.apps.lambda_app``.

Before anything else it installs an audit hook that refuses (``PermissionError``) every
attempt to open a file for writing and records it, so the test can check that nothing was
written. It then instruments with ``import driftline.auto``, trains a small model and
invokes a ``driftline.serverless.handler``-wrapped handler once per batch size given on the
command line (``DEFAULT_BATCHES`` without).
It prints one JSON line (the write attempts, the handler results) and leaves with
``os._exit(0)``: no ``atexit`` hook runs, so only the handler's own flush can have delivered
the telemetry.
"""
# ruff: noqa: E402, I001  (the audit hook must be in place before any other import)

from __future__ import annotations

import os
import sys
from typing import Any

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
WRITE_MODE_CHARS = frozenset("wax+")
# Audit events that change the file system without an ``open`` (renames, deletions, ...).
MUTATING_EVENTS = frozenset({"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.truncate",
                             "os.symlink", "os.link", "shutil.copyfile", "shutil.rmtree"})
PROBE_PATH = os.devnull
DEFAULT_BATCHES = (50, 70)

_attempts: list[dict[str, Any]] = []


def _is_write(mode: Any, flags: Any) -> bool:
    if isinstance(mode, str) and WRITE_MODE_CHARS & set(mode):
        return True
    return isinstance(flags, int) and bool(flags & WRITE_FLAGS)


def _refuse_writes(event: str, args: tuple[Any, ...]) -> None:
    if event == "open":
        _path, mode, flags = (*args, None, None, None)[:3]
        if not _is_write(mode, flags):
            return
    elif event not in MUTATING_EVENTS:
        return
    _attempts.append({"event": event, "path": os.fsdecode(args[0])
                      if isinstance(args[0], str | bytes | os.PathLike) else repr(args[0])})
    raise PermissionError(f"serverless test: {event} of {args[0]!r} refused")


sys.addaudithook(_refuse_writes)


def _probe() -> bool:
    """Whether the hook really refuses writes (else the test would prove nothing)."""
    try:
        with open(PROBE_PATH, "w"):
            pass
    except PermissionError:
        return True
    return False


HOOK_WORKS = _probe()
_attempts.clear()  # the probe is not an attempt of the code under test

import json

import driftline.auto  # the one instrumentation line

from sklearn.linear_model import LogisticRegression

import driftline
import driftline.serverless
from tests.apps import fraud_data


def main() -> None:
    X, y = fraud_data.training_rows()
    model = driftline.register(LogisticRegression().fit(X, y), name=fraud_data.MODEL_NAME,
                               version=fraud_data.MODEL_VERSION)
    live = fraud_data.live_rows()

    @driftline.serverless.handler
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        rows = live[event["start"]:event["start"] + event["rows"]]
        scores = model.predict_proba(rows)[:, 1]
        return {"rows": len(rows), "flagged": int((scores > 0.5).sum())}

    batches = [int(arg) for arg in sys.argv[1:]] or DEFAULT_BATCHES
    results = []
    start = 0
    for rows in batches:
        results.append(handle({"start": start, "rows": rows}, None))
        start += rows
    print(json.dumps({"hook_works": HOOK_WORKS, "write_attempts": _attempts,
                      "results": results}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
