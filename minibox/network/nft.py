"""nftables through libnftables (libnftables(3)), one narrated request per ruleset change.

libnftables parses nft(8)'s language and sends the netlink batch itself, so minibox
speaks to the kernel directly (no nft process) and --explain can show each rule in the
words a student would type. Published ports are a table per container: its removal is
one atomic request that takes every rule of the container with it.
"""

from __future__ import annotations

from minibox import explain
from minibox.errors import MiniboxError

MAN = "nft(8), libnftables(3)"
_ctx = None
_lib = None


def _context() -> tuple[object, object]:
    global _ctx, _lib
    if _ctx is None:
        try:
            from minibox._nft import ffi, lib  # csrc/build_nft.py
        except ImportError:
            raise MiniboxError("published ports need libnftables (apt-get install "
                               "libnftables1, then bash .ci/setup)") from None
        ctx = lib.nft_ctx_new(lib.NFT_CTX_DEFAULT)
        if ctx == ffi.NULL:
            raise MiniboxError("libnftables could not make a context (out of memory?)")
        # Keep nft's messages instead of printing them: errors become one clear line.
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        _ctx, _lib = ctx, lib
    return _ctx, _lib


def _text(ptr: object) -> str:
    from minibox._nft import ffi

    return "" if ptr == ffi.NULL else ffi.string(ptr).decode(errors="replace")


def run(commands: list[str], why: str, missing_ok: bool = False) -> bool:
    """Send `commands` as one batch (all or nothing); False if missing_ok and it did not exist."""
    ctx, lib = _context()
    text = "\n".join(commands)
    rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
    shown = "\n          ".join(commands)
    if rc != 0:
        err = _text(lib.nft_ctx_get_error_buffer(ctx)).strip()
        if missing_ok and "No such file or directory" in err:
            return False
        explain.step(f"nft {shown}", f"-1 ({err.splitlines()[0] if err else 'error'})",
                     why, MAN)
        raise MiniboxError(f"nftables refused the request ({why}): "
                           f"{err.splitlines()[0] if err else 'unknown error'}")
    explain.step(f"nft {shown}", 0, why, MAN)
    return True


def table_name(cid: str) -> str:
    return f"minibox-{cid[:12]}"


def publish(cid: str, ip: str, subnet: str, ports: list[dict]) -> str:
    """DNAT each published host port to the container's address, in a table of its own."""
    t = table_name(cid)
    cmds = [f"add table ip {t}",
            # Packets from other hosts and containers arrive through prerouting; the host's
            # own (curl 127.0.0.1:PORT) through output: both need the rule (nft(8) HOOKS).
            f"add chain ip {t} prerouting {{ type nat hook prerouting priority dstnat ; }}",
            f"add chain ip {t} output {{ type nat hook output priority -100 ; }}",
            f"add chain ip {t} postrouting {{ type nat hook postrouting priority srcnat ; }}"]
    for p in ports:
        if p["hostIp"] == "0.0.0.0":
            match = "fib daddr type local"  # any of the host's own addresses
        else:
            match = f"ip daddr {p['hostIp']}"
        rule = f"{match} {p['proto']} dport {p['hostPort']} dnat to {ip}:{p['containerPort']}"
        cmds += [f"add rule ip {t} prerouting {rule}", f"add rule ip {t} output {rule}"]
    # A connection from 127.0.0.1 keeps that source after DNAT; the container would answer
    # its own loopback. Masquerade gives it the bridge's address instead (docker does the same).
    cmds.append(f"add rule ip {t} postrouting ip saddr 127.0.0.0/8 ip daddr {ip} masquerade")
    # A neighbour on the same bridge calling the host's published port: without a new
    # source, the answer would go to it straight over the bridge, from an address it
    # never called (the "hairpin" case), and it would drop it.
    cmds.append(f"add rule ip {t} postrouting ip saddr {subnet} ip daddr {ip} "
                "ct status dnat masquerade")
    run(cmds, f"publish ports of container {cid[:12]}: host port -> {ip}")
    return t


def unpublish(table: str) -> None:
    run([f"delete table ip {table}"], "the container is gone: its port rules go with it",
        missing_ok=True)
