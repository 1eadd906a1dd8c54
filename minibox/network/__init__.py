"""Container networks: bridge, veth pairs, addresses, names and published ports.

Light on purpose: the CLI imports `options` to read the flags; pyroute2 (about 95 ms
of import) and libnftables load only in `endpoint`, `netlink` and `nft`, and only when
a container actually joins a network.
"""
