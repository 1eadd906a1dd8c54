"""Images: references, a content-addressed store, and layers (tar + whiteouts).

A plain library at the bottom of the house: it turns references and tarballs into an
ordered list of layer directories and an image config, and knows nothing of processes
or mounts (runtime/rootfs stacks the directories with overlayfs).
"""
