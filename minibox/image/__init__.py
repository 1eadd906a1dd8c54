"""Images: references, a content-addressed store, and layers (tar + whiteouts).

A plain library at the bottom of the house: it turns references and tarballs into an
ordered list of layer directories and an image config, and knows nothing of processes
or mounts (runtime/rootfs stacks the directories with overlayfs).
"""

from __future__ import annotations

import os

DEFAULT_ROOT = "/var/lib/minibox"


def default_root() -> str:
    """The data root: MINIBOX_DATA_ROOT (set by --data-root), else /var/lib/minibox."""
    return os.environ.get("MINIBOX_DATA_ROOT") or DEFAULT_ROOT
