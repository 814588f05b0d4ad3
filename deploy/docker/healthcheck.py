"""Container health check: exit 0 when the local server answers 200 on a path (default ``/health``), else 1.

Used by the Dockerfile's ``HEALTHCHECK`` and docker-compose.yml. The slim image has no curl, so this is standard
library only. The port follows the rule of ``entrypoint.sh``: ``FASTTRACK_PORT``, else ``PORT``, else 8000.
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_PORT = "8000"


def main(argv: list[str]) -> int:
    """Probe ``http://127.0.0.1:<port><path>`` once; print why on failure."""
    path = argv[1] if len(argv) > 1 else "/health"
    port = os.environ.get("FASTTRACK_PORT") or os.environ.get("PORT") or DEFAULT_PORT
    url = f"http://127.0.0.1:{port}{path}"
    # An HTTP(S)_PROXY set for the model download must not capture a probe of localhost.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=4) as response:
            status = response.status
    except (OSError, ValueError) as exc:  # URLError and HTTPError (e.g. 503 from /ready) are OSErrors
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
