"""Reference profiles from a directory, reloaded when a file changes (polled mtimes).

A changed file that no longer reads as a profile keeps its previous profile in service: the
failure is logged and counted, so a half-copied file never turns drift detection off.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from driftline.profile import Profile, ProfileError, load

_log = logging.getLogger(__name__)

DEFAULT_RELOAD_INTERVAL = "10s"


@dataclass(frozen=True, slots=True)
class _Seen:
    mtime_ns: int
    size: int


class ProfileWatcher:
    """``poll()`` returns the profiles by (model name, version) when they changed, else None.

    The processor's ticker polls and ``reload_profiles()`` may poll at the same moment: one
    lock makes each poll see and count a file's change once."""

    def __init__(self, directory: str | Path) -> None:
        self._lock = threading.Lock()
        self._directory = Path(directory)
        self._seen: dict[Path, _Seen] = {}
        self._by_file: dict[Path, Profile] = {}
        self.reloads = 0
        self.reload_failures = 0

    def load_all(self) -> dict[tuple[str, str], Profile]:
        """The first load. A damaged file is logged with its name and the bad key, counted
        in ``reload_failures`` and skipped: its model gets no verdicts until the file is
        fixed (the next poll reads it again), every other model is served."""
        for path in sorted(self._directory.glob("*.json")):
            try:
                stat = path.stat()
                self._seen[path] = _Seen(stat.st_mtime_ns, stat.st_size)
                self._by_file[path] = load(path)
            except (ProfileError, OSError) as exc:
                self.reload_failures += 1
                _log.error("ml_drift: profile %s cannot be used (%s); its model gets no "
                           "drift verdicts until the file is fixed, the other profiles "
                           "serve", path, exc)
        return self.profiles()

    def profiles(self) -> dict[tuple[str, str], Profile]:
        return {(p.model_name, p.model_version): p
                for _, p in sorted(self._by_file.items())}

    def poll(self) -> dict[tuple[str, str], Profile] | None:
        with self._lock:
            return self._poll()

    def _poll(self) -> dict[tuple[str, str], Profile] | None:
        if not self._directory.is_dir():  # unmounted or being replaced: keep what we have
            self.reload_failures += 1
            _log.error("ml_drift: profile directory %s is gone; keeping the %d loaded "
                       "profile(s)", self._directory, len(self._by_file))
            return None
        changed = False
        present = set()
        for path in sorted(self._directory.glob("*.json")):
            present.add(path)
            try:
                stat = path.stat()
            except OSError:
                continue  # removed between glob and stat
            seen = _Seen(stat.st_mtime_ns, stat.st_size)
            if self._seen.get(path) == seen:
                continue
            self._seen[path] = seen
            try:
                profile = load(path)
            except ProfileError as exc:
                self.reload_failures += 1
                kept = "keeping the previous one" if path in self._by_file else "not used"
                _log.error("ml_drift: profile %s changed but cannot be used (%s); %s",
                           path, exc, kept)
                continue
            self._by_file[path] = profile
            self.reloads += 1
            changed = True
            _log.info("ml_drift: loaded profile %s (model %r version %r)", path,
                      profile.model_name, profile.model_version)
        for path in set(self._by_file) - present:
            del self._by_file[path]
            self._seen.pop(path, None)
            changed = True
            _log.info("ml_drift: profile %s removed; its model is no longer compared", path)
        return self.profiles() if changed else None
