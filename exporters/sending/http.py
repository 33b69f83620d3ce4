"""One HTTP POST as the push exporters need it: the response body, or a ``SendError`` that
says whether to retry (429, 502, 503, 504 and connection failures, as the OTLP/HTTP and
remote write specifications say) and after how long (``Retry-After``)."""

from __future__ import annotations

import email.utils
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

from driftline.exporters.sending.queue import SendError

RETRYABLE_STATUSES = (429, 502, 503, 504)
ERROR_DETAIL_BYTES = 512


def retry_after_s(header: str | None, now_s: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    if not header:
        return None
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now_s is None else now_s), 0.0)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float,
         context: ssl.SSLContext | None = None) -> bytes:
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s or None,
                                    context=context if url.startswith("https") else None
                                    ) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        detail = error.read(ERROR_DETAIL_BYTES).decode("utf-8", "replace")
        raise SendError(f"{url}: {error.code} {detail}".strip(),
                        retryable=error.code in RETRYABLE_STATUSES,
                        retry_after_s=retry_after_s(error.headers.get("Retry-After"))) from None
    except (urllib.error.URLError, OSError) as error:
        raise SendError(f"{url}: {error}", retryable=True) from None
