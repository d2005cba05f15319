"""Session-wide test set-up.

The Hub-compatible test server starts here, at import, because ``huggingface_hub`` reads
``HF_ENDPOINT`` when it is first imported: nothing in the suite may reach the real Hub.
Progress bars are off in tests.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import hubserver  # noqa: E402  (must run before anything imports huggingface_hub)

HUB = hubserver.ensure_global_server()
