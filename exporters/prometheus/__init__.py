"""The ``prometheus`` exporter (a scrape endpoint): config, factory and component in
``exporter``, the text format in ``text``, classic bins for reference profiles in
``classic_bins``."""

from __future__ import annotations
