"""Which model a call belongs to: ``ml.model.name`` and ``ml.model.version``.

``register`` stores the identity on the model object itself, so it survives pickling and
joblib round trips with the model artefact. Unregistered models take
``DRIFTLINE_MODEL_NAME``/``DRIFTLINE_MODEL_VERSION`` (single-model services) or, failing
that, their class name.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from driftline import semconv

IDENTITY_ATTRIBUTE = "_driftline_identity"

ModelT = TypeVar("ModelT")


class RegisterListener(Protocol):
    def registered(self, model: Any) -> None: ...


# What caches identities (the instrumentations' call sites), told of each register().
_listeners: weakref.WeakSet[RegisterListener] = weakref.WeakSet()


def on_register(listener: RegisterListener) -> None:
    """Call ``listener.registered(model)`` after each ``register``, while it lives."""
    _listeners.add(listener)


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    name: str
    version: str = ""


def register(model: ModelT, *, name: str, version: str = "") -> ModelT:
    """Name a model for Driftline; returns the model so it can wrap a constructor."""
    if not name:
        raise ValueError("driftline.register: name must be a non-empty string")
    object.__setattr__(model, IDENTITY_ATTRIBUTE, ModelIdentity(str(name), str(version)))
    for listener in list(_listeners):
        listener.registered(model)
    return model


def identity_of(model: Any) -> ModelIdentity:
    registered = getattr(model, IDENTITY_ATTRIBUTE, None)
    if isinstance(registered, ModelIdentity):
        return registered
    return ModelIdentity(os.environ.get(semconv.ENV_MODEL_NAME) or type(model).__name__,
                         os.environ.get(semconv.ENV_MODEL_VERSION, ""))
