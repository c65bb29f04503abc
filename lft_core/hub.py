"""Whether the Hugging Face Hub can be reached: the one place models, datasets and pushes ask before going online."""

from __future__ import annotations

import functools
import os
import socket
import time
from urllib.parse import urlparse


@functools.lru_cache(maxsize=1)
def _reachable(host: str, minute: int, timeout: float) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the Hub, remembered for a minute. Without it, an offline machine spends a long time
    in huggingface_hub's retries before failing to load a Hub name (benchmarks/results/defaults.md); with it, we use
    the local cache only."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    return _reachable(host, int(time.time() // 60), timeout)
