"""Each namespace `minibox run` creates, seen from inside the container and from the host."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import pytest

NAMESPACES = ("uts", "pid", "net", "mnt", "ipc", "cgroup")


def host_ns(name: str) -> str:
    return os.readlink(f"/proc/self/ns/{name}")


# --- PID --------------------------------------------------------------------------------

def test_command_is_pid_1(minibox, rootfs):
    r = minibox(rootfs, "sh", "-c", "echo $$")
    assert (r.returncode, r.stdout) == (0, "1\n"), r.stderr


def test_proc_lists_only_the_containers_processes(minibox, rootfs):
    r = minibox(rootfs, "sh", "-c", "sleep 5 & ls /proc; kill $!")
    assert r.returncode == 0, r.stderr
    pids = {int(name) for name in r.stdout.split() if name.isdigit()}
    # sh (1), the background sleep and ls itself; the host has dozens more.
    assert 1 in pids and len(pids) <= 3, pids
    assert os.getpid() not in pids
    host_pids = {int(name) for name in os.listdir("/proc") if name.isdigit()}
    assert len(host_pids) > 10


def test_pid_seen_from_the_host_is_not_1(spawn, rootfs):
    c = spawn(rootfs, "sleep", "30")
    assert c.pid != 1
    assert c.pid in [int(p) for p in Path(f"/proc/{c.proc.pid}/task/{c.proc.pid}/children")
                     .read_text().split()]
    # NSpid: the pid in each namespace, outermost first: the host's, then 1 inside.
    assert c.status("NSpid").split() == [str(c.pid), "1"]
    assert Path(f"/proc/{c.pid}/cmdline").read_bytes() == b"sleep\x0030\x00"


def test_namespaces_differ_from_the_hosts(spawn, rootfs):
    c = spawn(rootfs, "sleep", "30")
    for name in NAMESPACES:
        assert c.ns(name) != host_ns(name), f"{name} namespace shared with the host"
    # No --userns: the user namespace is the host's.
    assert c.ns("user") == host_ns("user")


# --- UTS --------------------------------------------------------------------------------

def test_default_hostname_is_the_short_id(minibox, rootfs):
    before = socket.gethostname()
    r = minibox(rootfs, "sh", "-c", "hostname; echo $HOSTNAME")
    assert r.returncode == 0, r.stderr
    name, env = r.stdout.split()
    assert re.fullmatch(r"[0-9a-f]{12}", name), name
    assert env == name
    assert socket.gethostname() == before


def test_hostname_flag(minibox, rootfs):
    before = socket.gethostname()
    r = minibox("-h", "box1", rootfs, "sh", "-c",
                "hostname; cat /proc/sys/kernel/hostname; echo $HOSTNAME")
    assert (r.returncode, r.stdout.split()) == (0, ["box1"] * 3), r.stderr
    assert socket.gethostname() == before


def test_hostname_seen_from_the_host(spawn, rootfs):
    before = socket.gethostname()
    c = spawn("--hostname", "outsider", rootfs, "sleep", "30")
    inside = subprocess.run(["nsenter", "-t", str(c.pid), "-u", "hostname"],
                            capture_output=True, text=True, check=True).stdout
    assert inside == "outsider\n"
    assert socket.gethostname() == before
    assert Path("/proc/sys/kernel/hostname").read_text().strip() == before


def test_container_cannot_rename_the_host(minibox, rootfs):
    before = socket.gethostname()
    r = minibox(rootfs, "sh", "-c", "hostname renamed && hostname")
    assert (r.returncode, r.stdout) == (0, "renamed\n"), r.stderr
    assert socket.gethostname() == before


# --- network ----------------------------------------------------------------------------

def test_only_lo_and_it_is_up(minibox, rootfs):
    r = minibox(rootfs, "sh", "-c",
                "ls /sys/class/net; cat /sys/class/net/lo/operstate; ip link show lo")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["lo", "unknown"], r.stdout
    assert re.search(r"<[^>]*\bUP\b[^>]*>", lines[2]), r.stdout
    assert len(re.findall(r"^\d+: ", r.stdout, re.M)) == 1


def test_loopback_answers(minibox, rootfs):
    r = minibox(rootfs, "ping", "-c", "1", "-W", "2", "127.0.0.1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 packets received" in r.stdout


def test_network_seen_from_the_host(spawn, rootfs):
    host_links = sorted(os.listdir("/sys/class/net"))
    c = spawn(rootfs, "sleep", "30")
    # /proc/PID/net is the network namespace of PID: only lo in there.
    lines = Path(f"/proc/{c.pid}/net/dev").read_text().splitlines()[2:]
    assert [line.split(":")[0].strip() for line in lines] == ["lo"]
    assert len(host_links) > 1 and sorted(os.listdir("/sys/class/net")) == host_links


# --- mount ------------------------------------------------------------------------------

BASE_MOUNTS = {"/", "/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"}
MASKED_OR_READONLY = ("/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                      "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                      "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/proc/bus",
                      "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def check_container_mounts(mountinfo: str, seen_from_inside: bool = True) -> None:
    """A default container's mount table: / and the default filesystems, one mount per
    masked or read-only path that exists on this kernel (runtime/spec.py), and its own
    cgroup hierarchies under /sys/fs/cgroup; nothing of the host's."""
    lines = mountinfo.splitlines()
    points = [line.split()[4] for line in lines]
    assert len(points) == len(set(points)), f"a mount point listed twice:\n{mountinfo}"
    expected = BASE_MOUNTS | {p for p in MASKED_OR_READONLY if os.path.exists(p)}
    cgroup = {p for p in points if p == "/sys/fs/cgroup" or p.startswith("/sys/fs/cgroup/")}
    assert set(points) - cgroup == expected, mountinfo
    for line in lines:
        fields = line.split()
        fstype, source = line.partition(" - ")[2].split()[:2]
        # Mount points and sources name container paths only, never the host's tree.
        for text in (fields[4], source):
            assert not text.startswith(("/work", "/mnt", "/tmp", "/home")), line
        if fields[4] in cgroup:
            assert fstype in ("tmpfs", "cgroup", "cgroup2"), line
            # Each hierarchy is rooted at the container's own group, / in its cgroup
            # namespace (the host sees the group's real path there).
            assert fields[3] == "/" or not seen_from_inside, line
    # (The fourth field of the rootfs line is the bind source's path inside its
    # filesystem, e.g. /work/main/rootfs: the kernel shows that for every bind mount.)


def test_mountinfo_lists_only_the_containers_mounts(minibox, rootfs):
    r = minibox(rootfs, "cat", "/proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    check_container_mounts(r.stdout)


def test_host_does_not_see_the_containers_mounts(spawn, rootfs):
    c = spawn(rootfs, "sleep", "30")
    host = Path("/proc/self/mountinfo").read_text()
    assert f" {rootfs}/" not in host and f" {rootfs} " not in host
    inside = Path(f"/proc/{c.pid}/mountinfo").read_text()
    assert inside.splitlines()[0].split()[4] == "/"
    check_container_mounts(inside, seen_from_inside=False)


# --- IPC --------------------------------------------------------------------------------

def test_hosts_shm_segment_is_invisible_inside(minibox, rootfs, host_shm, shm_ids_of):
    assert host_shm in shm_ids_of(Path("/proc/sysvipc/shm").read_text())
    r = minibox(rootfs, "cat", "/proc/sysvipc/shm")
    assert r.returncode == 0, r.stderr
    assert shm_ids_of(r.stdout) == set(), r.stdout


def test_ipc_namespace_seen_from_the_host(spawn, rootfs, host_shm, shm_ids_of):
    c = spawn(rootfs, "sleep", "30")
    inside = subprocess.run(["nsenter", "-t", str(c.pid), "-i", "cat", "/proc/sysvipc/shm"],
                            capture_output=True, text=True, check=True).stdout
    assert shm_ids_of(inside) == set()
    assert host_shm in shm_ids_of(Path("/proc/sysvipc/shm").read_text())


# --- cgroup -----------------------------------------------------------------------------

@pytest.fixture
def pids_cgroup():
    """A v1 pids cgroup for minibox to start in, so the host sees a path that is not /."""
    path = Path(f"/sys/fs/cgroup/pids/minibox-test-{os.getpid()}")
    path.mkdir()
    yield path
    leftovers = sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True)
    for d in leftovers:
        d.rmdir()
    path.rmdir()
    assert not leftovers, f"cgroups left behind: {[str(d) for d in leftovers]}"


def test_cgroup_paths_are_root_inside(minibox, rootfs):
    r = minibox(rootfs, "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(line.endswith(":/") for line in lines), r.stdout


def test_cgroup_namespace_seen_from_the_host(pids_cgroup, spawn, rootfs):
    def join_cgroup() -> None:
        (pids_cgroup / "cgroup.procs").write_text(str(os.getpid()))

    c = spawn(rootfs, "sh", "-c", "cat /proc/self/cgroup; sleep 30", preexec_fn=join_cgroup)
    host_view = Path(f"/proc/{c.pid}/cgroup").read_text()
    assert re.search(rf"^\d+:pids:/{pids_cgroup.name}(/.*)?$", host_view, re.M), host_view
    os.kill(c.pid, signal.SIGKILL)
    _, out, err = c.wait()
    assert re.search(r"^\d+:pids:/$", out, re.M), out + err
    assert all(line.endswith(":/") for line in out.splitlines()), out


# --- user -------------------------------------------------------------------------------

def test_userns_maps_root_to_100000(minibox, rootfs):
    r = minibox("--userns", rootfs, "sh", "-c",
                "cat /proc/self/uid_map /proc/self/gid_map; id; stat -c %u:%g /bin/busybox")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [line.split() for line in lines[:2]] == [["0", "100000", "65536"]] * 2
    assert lines[2].startswith("uid=0(root) gid=0(root)"), lines[2]
    # The rootfs is idmapped: host root's files belong to container root.
    assert lines[3] == "0:0"


def test_userns_seen_from_the_host(spawn, rootfs):
    c = spawn("--userns", rootfs, "sleep", "30")
    assert c.ns("user") != host_ns("user")
    assert Path(f"/proc/{c.pid}/uid_map").read_text().split() == ["0", "100000", "65536"]
    assert c.status("Uid").split() == ["100000"] * 4
    assert c.status("Gid").split() == ["100000"] * 4
    for name in NAMESPACES:
        assert c.ns(name) != host_ns(name), name


def test_userns_file_in_volume_is_owned_by_100000_on_host(minibox, userns_rootfs_copy,
                                                          userns_dir):
    # A copy of the rootfs: minibox makes the /data mount point in it.
    r = minibox("--userns", "-v", f"{userns_dir}:/data", userns_rootfs_copy, "sh", "-c",
                "echo hello > /data/made-inside && stat -c %u:%g /data/made-inside")
    assert (r.returncode, r.stdout) == (0, "0:0\n"), r.stderr
    st = os.stat(userns_dir / "made-inside")
    assert (st.st_uid, st.st_gid) == (100000, 100000)
    assert (userns_dir / "made-inside").read_text() == "hello\n"


def test_userns_with_overlay(minibox, rootfs, userns_dir):
    r = minibox("--userns", "--overlay", "-v", f"{userns_dir}:/data", rootfs, "sh", "-c",
                "echo changed > /etc/userns-overlay && cat /etc/userns-overlay && "
                "touch /data/f && stat -c %u /etc/userns-overlay /data/f")
    assert (r.returncode, r.stdout) == (0, "changed\n0\n0\n"), r.stderr
    assert not (Path(rootfs) / "etc" / "userns-overlay").exists()
    assert os.stat(userns_dir / "f").st_uid == 100000


def test_userns_user_flag_maps_too(spawn, rootfs):
    c = spawn("--userns", "-u", "1000:1000", rootfs, "sleep", "30")
    assert c.status("Uid").split() == ["101000"] * 4
    assert c.status("Gid").split() == ["101000"] * 4
