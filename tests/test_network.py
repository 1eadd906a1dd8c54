"""Container networks, seen from inside and from the host: the bridge, veth pairs,
leased addresses, names on a user-defined network, published ports, --network
none/host/container:ID, cleanup (also after `kill -9` of the monitor), and the errors.

Traffic only ever goes between this machine's loopback and the namespaces these tests
create. Containers use a private state root (`minibox --root DIR`), networks live in
/run/minibox/networks as they always do (bridges are host-wide objects). The default
network's bridge minibox0 stays once made, like docker0: the module fixture makes it
before the first leak-check snapshot. conftest.py's leak check also compares the host's
links, addresses, nftables tables and leases around every test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MINIBOX = REPO / ".venv" / "bin" / "minibox"
ROOTFS = REPO / "rootfs"
NET_ROOT = Path("/run/minibox/networks")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

Box = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def state_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("netroot")
    # The default bridge (like docker0) is made by the first container that uses it and
    # then stays: make it now, before any test's leak-check snapshot.
    r = subprocess.run([MINIBOX, "--root", root, "run", "--network", "bridge", ROOTFS,
                        "true"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    yield root


@pytest.fixture
def box(state_root: Path) -> Iterator[Box]:
    """box(*args) -> `minibox --root ROOT ARGS`; removes every container it made after."""

    def run(*args: object, timeout: float = 30, check: bool = False
            ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([str(MINIBOX), "--root", str(state_root), *map(str, args)],
                           capture_output=True, text=True, timeout=timeout, cwd=REPO,
                           start_new_session=True)
        assert "Traceback" not in r.stderr, r.stderr
        if check:
            assert r.returncode == 0, f"{args}: {r.stderr}"
        return r

    yield run
    ids = run("ps", "-aq").stdout.split()
    if ids:
        run("rm", "-f", *ids)


@pytest.fixture
def network(box: Box) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def create(name: str, *flags: str) -> str:
        box("network", "create", *flags, name, check=True)
        made.append(name)
        return name

    yield create
    ids = box("ps", "-aq").stdout.split()  # a network in use cannot go: containers first
    if ids:
        box("rm", "-f", *ids)
    for name in made:
        box("network", "rm", name)


def free_subnet() -> str:
    """A /24 no host route and no minibox network covers (tests never assume one is free)."""
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    taken = set(re.findall(r"^(\d+\.\d+\.\d+)\.", routes, re.M))
    for cfg in NET_ROOT.glob("*/network.json"):
        taken.add(json.loads(cfg.read_text())["subnet"].rsplit(".", 2)[0])
    for n in range(200, 250):
        if f"10.{n}.7" not in taken and not any(t.startswith(f"10.{n}.") for t in taken):
            return f"10.{n}.7.0/24"
    raise AssertionError("no free test subnet")


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def host_links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


# ---------------------------------------------------------------------------------------
# Inside the container
# ---------------------------------------------------------------------------------------

def test_bridge_gives_eth0_an_address_and_a_default_route(box: Box) -> None:
    r = box("run", "--network", "bridge", ROOTFS, "sh", "-c",
            "ip -4 addr show eth0; ip route; cat /etc/hosts /etc/hostname", check=True)
    cfg = json.loads((NET_ROOT / "bridge" / "network.json").read_text())
    m = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/(\d+)", r.stdout)
    assert m, r.stdout
    import ipaddress

    assert ipaddress.IPv4Address(m[1]) in ipaddress.IPv4Network(cfg["subnet"])
    assert f"default via {cfg['gateway']} dev eth0" in r.stdout
    assert re.search(rf"^{re.escape(m[1])}\s", r.stdout, re.M), "own address in /etc/hosts"


def test_two_containers_ping_by_address_on_the_bridge(box: Box) -> None:
    box("run", "-d", "--network", "bridge", "--name", "pa", ROOTFS, "sleep", "60", check=True)
    ip = box("exec", "pa", "sh", "-c", "ip -4 -o addr show eth0", check=True).stdout.split()[3]
    ip = ip.split("/")[0]
    r = box("run", "--network", "bridge", ROOTFS, "ping", "-c", "1", "-W", "3", ip)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 packets received" in r.stdout


def test_names_resolve_on_a_user_defined_network(box: Box, network: Callable[..., str]
                                                 ) -> None:
    net = network("tn-names", "--subnet", free_subnet())
    box("run", "-d", "--network", net, "--name", "alpha", ROOTFS, "sleep", "60", check=True)
    box("run", "-d", "--network", net, "--name", "beta", ROOTFS, "sleep", "60", check=True)
    # Both directions: the earlier container's /etc/hosts was rewritten when beta came.
    for a, b in (("alpha", "beta"), ("beta", "alpha")):
        r = box("exec", a, "ping", "-c", "1", "-W", "3", b)
        assert r.returncode == 0, f"{a} -> {b}: {r.stdout}{r.stderr}"
    inspect = json.loads(box("network", "inspect", net, check=True).stdout)[0]
    assert sorted(c["Name"] for c in inspect["Containers"].values()) == ["alpha", "beta"]
    box("rm", "-f", "beta", check=True)
    assert "beta" not in box("exec", "alpha", "cat", "/etc/hosts", check=True).stdout


def test_published_port_reaches_httpd_from_the_host(box: Box, tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("served from a container\n")
    port = free_port()
    cid = box("run", "-d", "--network", "bridge", "-p", f"127.0.0.1:{port}:80",
              "-v", f"{tmp_path}:/www:ro", ROOTFS, "httpd", "-f", "-p", "80", "-h", "/www",
              check=True).stdout.strip()
    assert box("port", cid, check=True).stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    body = ""
    for _ in range(50):  # httpd needs a moment to listen after exec
        r = subprocess.run(["curl", "-s", "-m", "3", f"http://127.0.0.1:{port}/"],
                           capture_output=True, text=True)
        body = r.stdout
        if body:
            break
        time.sleep(0.1)
    assert body == "served from a container\n"
    table = f"minibox-{cid[:12]}"
    assert table in subprocess.run(["nft", "list", "tables"], capture_output=True,
                                   text=True).stdout
    box("rm", "-f", cid, check=True)
    assert table not in subprocess.run(["nft", "list", "tables"], capture_output=True,
                                       text=True).stdout
    r = subprocess.run(["curl", "-s", "-m", "2", f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True)
    assert r.returncode != 0, "the published port outlived its container"


def test_publish_all_picks_free_host_ports(box: Box) -> None:
    cid = box("create", "--network", "bridge", "--expose", "80", "--expose", "53/udp", "-P",
              ROOTFS, "true", check=True).stdout.strip()
    lines = box("port", cid, check=True).stdout.splitlines()
    assert len(lines) == 2
    assert {line.split()[0] for line in lines} == {"80/tcp", "53/udp"}
    assert all(int(line.rsplit(":", 1)[1]) > 0 for line in lines)


def test_network_none_has_only_lo(box: Box) -> None:
    r = box("run", "--network", "none", ROOTFS, "ls", "/sys/class/net", check=True)
    assert r.stdout.split() == ["lo"]


def test_network_host_sees_the_hosts_interfaces(box: Box) -> None:
    r = box("run", "--network", "host", ROOTFS, "ls", "/sys/class/net", check=True)
    assert set(r.stdout.split()) == host_links()


def test_network_container_shares_the_other_namespace(box: Box) -> None:
    box("run", "-d", "--network", "bridge", "--name", "first", ROOTFS, "sleep", "60",
        check=True)
    pid = json.loads(box("inspect", "first", check=True).stdout)[0]["State"]["Pid"]
    inside = os.readlink(f"/proc/{pid}/ns/net")
    r = box("run", "--network", "container:first", ROOTFS, "sh", "-c",
            "readlink /proc/self/ns/net; ip -4 -o addr show eth0", check=True)
    assert r.stdout.splitlines()[0] == inside
    first_ip = box("exec", "first", "ip", "-4", "-o", "addr", "show", "eth0",
                   check=True).stdout.split()[3]
    assert first_ip in r.stdout


def test_connect_and_disconnect_a_running_container(box: Box, network: Callable[..., str]
                                                    ) -> None:
    net = network("tn-conn", "--subnet", free_subnet())
    box("run", "-d", "--network", "bridge", "--name", "mover", ROOTFS, "sleep", "60",
        check=True)
    box("network", "connect", net, "mover", check=True)
    r = box("exec", "mover", "ip", "-4", "-o", "addr", check=True)
    assert "eth1" in r.stdout
    box("network", "disconnect", net, "mover", check=True)
    r = box("exec", "mover", "ip", "-o", "link", check=True)
    assert "eth1" not in r.stdout
    assert not list((NET_ROOT / net / "leases").iterdir())


def test_explain_tells_each_network_step(box: Box) -> None:
    r = box("run", "--explain", "--network", "bridge", "-p", f"127.0.0.1:{free_port()}:80",
            ROOTFS, "true", check=True)
    for step in ("type veth peer", "master", "netns pid", "RTM_NEWADDR", "RTM_NEWROUTE default",
                 "dnat to", "leases/", "delete table ip minibox-"):
        assert step in r.stderr, step


# ---------------------------------------------------------------------------------------
# Leaving the host as it was
# ---------------------------------------------------------------------------------------

def _host_state() -> tuple[set[str], str, str, set[str]]:
    addrs = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    leases = {str(p) for p in NET_ROOT.glob("*/leases/*")} | \
        {str(p) for p in NET_ROOT.glob("ports/*")}
    return host_links(), addrs, tables, leases


def test_fifty_runs_leave_the_host_as_it_was(box: Box) -> None:
    before = _host_state()
    for i in range(50):
        port = free_port()
        cid = box("run", "-d", "--network", "bridge", "-p", f"127.0.0.1:{port}:80", ROOTFS,
                  "sleep", "30", check=True).stdout.strip()
        if i % 2:
            box("rm", "-f", cid, check=True)
        else:
            box("kill", cid, check=True)
            box("wait", cid)
            box("rm", cid, check=True)
    deadline = time.monotonic() + 5
    while _host_state() != before and time.monotonic() < deadline:
        time.sleep(0.1)  # a dead namespace's veth goes in the kernel's cleanup work
    assert _host_state() == before


def test_rm_after_the_monitor_was_killed_takes_everything_back(box: Box) -> None:
    before = _host_state()
    cid = box("run", "-d", "--network", "bridge", "-p", f"127.0.0.1:{free_port()}:80",
              ROOTFS, "sleep", "60", check=True).stdout.strip()
    st = json.loads(box("inspect", cid, check=True).stdout)[0]["State"]
    os.kill(st["MonitorPid"], signal.SIGKILL)
    box("rm", "-f", cid, check=True)
    deadline = time.monotonic() + 5
    while _host_state() != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _host_state() == before


def test_concurrent_clis_never_share_an_address(box: Box) -> None:
    procs = [subprocess.Popen([MINIBOX, "--root", box("ps", "-q").args[2], "run", "-d",
                               "--network", "bridge", ROOTFS, "sleep", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=REPO, start_new_session=True) for _ in range(8)]
    ids = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        ids.append(out.strip())
    ips = [box("exec", c, "ip", "-4", "-o", "addr", "show", "eth0", check=True).stdout.split()[3]
           for c in ids]
    assert len(set(ips)) == len(ips)


# ---------------------------------------------------------------------------------------
# Bad input: one line, exit 125, nothing half-made
# ---------------------------------------------------------------------------------------

def _one_line_125(r: subprocess.CompletedProcess[str], *words: str) -> None:
    assert r.returncode == 125, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minibox: "), r.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_a_port_in_use_on_the_host_is_refused(box: Box) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        before = _host_state()
        r = box("run", "--network", "bridge", "-p", f"127.0.0.1:{port}:80", ROOTFS, "true")
        _one_line_125(r, str(port), "in use")
        assert _host_state() == before
        assert box("ps", "-aq").stdout == ""
    finally:
        listener.close()


def test_a_port_held_by_another_container_is_refused(box: Box) -> None:
    port = free_port()
    box("create", "--network", "bridge", "-p", f"127.0.0.1:{port}:80", ROOTFS, "true",
        check=True)
    r = box("run", "--network", "bridge", "-p", f"{port}:81", ROOTFS, "true")
    _one_line_125(r, str(port), "already allocated")


@pytest.mark.parametrize("bad", ["80:", "1.2.3:80:80", "0:80:90000", "8080:80/sctp", "a:b"])
def test_a_malformed_publish_is_refused(box: Box, bad: str) -> None:
    _one_line_125(box("run", "--network", "bridge", "-p", bad, ROOTFS, "true"), "-p")


def test_an_unknown_network_is_refused(box: Box) -> None:
    before = _host_state()
    _one_line_125(box("run", "--network", "no-such-net", ROOTFS, "true"),
                  "network no-such-net not found")
    assert _host_state() == before
    assert box("ps", "-aq").stdout == ""


def test_removing_a_network_in_use_is_refused(box: Box, network: Callable[..., str]) -> None:
    net = network("tn-busy", "--subnet", free_subnet())
    box("create", "--network", net, "--name", "holder", ROOTFS, "true", check=True)
    _one_line_125(box("network", "rm", net), "holder")
    assert net in box("network", "ls", "-q", check=True).stdout.split()


def test_a_subnet_overlapping_a_host_route_is_refused(box: Box) -> None:
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    taken = re.search(r"^(\d+\.\d+\.\d+\.\d+/\d+) dev", routes, re.M)
    assert taken, routes
    before = _host_state()
    _one_line_125(box("network", "create", "--subnet", taken[1], "tn-overlap"), "overlaps")
    assert "tn-overlap" not in box("network", "ls", "-q").stdout.split()
    assert _host_state() == before


def test_ps_and_inspect_show_the_address_and_ports(box: Box) -> None:
    port = free_port()
    cid = box("run", "-d", "--network", "bridge", "-p", f"127.0.0.1:{port}:80/udp", ROOTFS,
              "sleep", "30", check=True).stdout.strip()
    assert f"127.0.0.1:{port}->80/udp" in box("ps", check=True).stdout
    settings = json.loads(box("inspect", cid, check=True).stdout)[0]["NetworkSettings"]
    ip = settings["Networks"]["bridge"]["IPAddress"]
    inside = box("exec", cid, "ip", "-4", "-o", "addr", "show", "eth0", check=True).stdout
    assert f"inet {ip}/" in inside
    assert settings["Ports"] == {"80/udp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}


@pytest.mark.parametrize("verb", ["create", "rm"])
def test_the_predefined_bridge_network_is_kept(box: Box, verb: str) -> None:
    _one_line_125(box("network", verb, "bridge"), "pre-defined")
    assert "bridge" in box("network", "ls", "-q", check=True).stdout.split()


def test_add_host_dns_and_hostname_are_the_containers_own_files(box: Box) -> None:
    r = box("run", "--network", "none", "--add-host", "db:10.1.2.3", "--dns", "10.0.0.53",
            "-h", "myhost", ROOTFS, "sh", "-c",
            "cat /etc/hosts /etc/resolv.conf /etc/hostname; ls /sys/class/net", check=True)
    assert "10.1.2.3\tdb\n" in r.stdout
    assert "nameserver 10.0.0.53\n" in r.stdout
    assert r.stdout.endswith("myhost\nlo\n")
    # The image's files stay as they were: the container's are bind-mounted over them.
    assert "db" not in (ROOTFS / "etc" / "hosts").read_text()


def test_publishing_without_a_network_is_refused(box: Box) -> None:
    _one_line_125(box("run", "--network", "none", "-p", "80:80", ROOTFS, "true"),
                  "--network none")


def test_joining_a_missing_container_is_refused(box: Box) -> None:
    _one_line_125(box("run", "--network", "container:no-such-box", ROOTFS, "true"),
                  "no-such-box")


def test_subnet_and_gateway_are_configurable(box: Box, network: Callable[..., str]) -> None:
    subnet = free_subnet()
    prefix = subnet.rsplit(".", 1)[0]
    net = network("tn-gw", "--subnet", subnet, "--gateway", f"{prefix}.254")
    r = box("run", "--network", net, ROOTFS, "sh", "-c", "ip -4 -o addr show eth0; ip route",
            check=True)
    assert f"inet {prefix}.1/24" in r.stdout  # the first free host address
    assert f"default via {prefix}.254 dev eth0" in r.stdout
    br = json.loads(box("network", "inspect", net, check=True).stdout)[0]["Bridge"]
    host = subprocess.run(["ip", "-4", "-o", "addr", "show", br], capture_output=True,
                          text=True).stdout
    assert f"inet {prefix}.254/24" in host


@pytest.mark.parametrize("flags", [["--subnet", "10.0.0.0/33"], ["--subnet", "nonsense"],
                                   ["--gateway", "10.1.1.1"], ["--driver", "overlay"]])
def test_bad_network_options_are_refused(box: Box, flags: list[str]) -> None:
    if flags[0] == "--gateway":
        flags = ["--subnet", free_subnet(), *flags]  # a gateway outside its subnet
    before = _host_state()
    _one_line_125(box("network", "create", *flags, "tn-bad"))
    assert "tn-bad" not in box("network", "ls", "-q").stdout.split()
    assert _host_state() == before


def test_a_network_whose_bridge_vanished_gets_it_back(box: Box, network: Callable[..., str]
                                                      ) -> None:
    subnet = free_subnet()
    net = network("tn-gone", "--subnet", subnet)
    br = json.loads(box("network", "inspect", net, check=True).stdout)[0]["Bridge"]
    subprocess.run(["ip", "link", "del", br], check=True)  # behind minibox's back
    box("run", "-d", "--network", net, "--name", "back", ROOTFS, "sleep", "30", check=True)
    gw = subnet.rsplit(".", 1)[0] + ".1"
    host = subprocess.run(["ip", "-4", "-o", "addr", "show", br], capture_output=True,
                          text=True).stdout
    assert f"inet {gw}/24" in host
    r = box("exec", "back", "ping", "-c", "1", "-W", "3", gw)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_lease_left_by_a_killed_minibox_is_taken_back(box: Box, state_root: Path) -> None:
    """A lease whose container directory is gone (minibox SIGKILLed between writing the
    lease and its record) is reclaimed by the next allocation: made here by hand."""
    cfg = json.loads((NET_ROOT / "bridge" / "network.json").read_text())
    prefix = cfg["gateway"].rsplit(".", 1)[0]
    stale = NET_ROOT / "bridge" / "leases" / f"{prefix}.2"
    assert not stale.exists()
    stale.write_text(json.dumps({"cid": "0" * 64, "name": "",
                                 "dir": str(state_root / "containers" / ("0" * 64))}))
    r = box("run", "--network", "bridge", ROOTFS, "ip", "-4", "-o", "addr", "show", "eth0",
            check=True)
    assert f"inet {prefix}.2/" in r.stdout
    assert not stale.exists()
