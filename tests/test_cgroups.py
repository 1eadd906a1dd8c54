"""cgroups: every resource flag is really enforced, seen from inside and from the host.

Layout-agnostic: the same tests pass on a cgroup v1 (or hybrid) host and on a pure v2
host (tests/test_cgroups_v2guest.py runs this file in a `cgroup_no_v1=all` qemu guest).
Where a feature exists on one version only, the test asserts what the other version
must do instead (e.g. v2 refuses --net-cls-classid with one line).

A container whose group we inspect runs in the background (conftest's `spawn`) with a
script that ends in `echo @@READY; read _`: the test reads its output up to the marker,
looks at the group from the host (found with --cidfile and minibox.cgroups.driver.open_group),
then closes the container's stdin so it ends normally, or kills its init by pid.
"""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import struct
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from minibox.cgroups import detect
from minibox.cgroups.driver import Driver, open_group

ROOTFS = Path(__file__).resolve().parent.parent / "rootfs"
STATE_ROOT = "/run/minibox"
MiB = 1 << 20
# Fills a shell variable with 100 MB: far beyond --memory 32m (and its 64m memory+swap).
HOG = 'x=$(head -c 100000000 /dev/zero | tr "\\0" a)'
BUSY = "while :; do :; done"
OOM_LINE = "minibox: killed by the kernel's OOM killer (memory limit 32MiB)"


def layout() -> detect.Layout:
    """The host's layout read now: minibox may have mounted a v1 hierarchy since
    detect() cached it in this process."""
    return detect._read()


IS_V2 = layout().kind == "v2"


def group(cid: str) -> Driver:
    return open_group(cid, layout())


# ---------------------------------------------------------------------------------------
# Where groups live, independently of minibox's own code
# ---------------------------------------------------------------------------------------

def _own_groups() -> dict[str, str]:
    """This process's group per hierarchy: controller name (or 'name=x', or '') -> path."""
    own: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _id, ctrls, path = line.split(":", 2)
        for ctrl in ctrls.split(",") if ctrls else [""]:
            own[ctrl] = path.rstrip("/")
    return own


def cgroup_mounts() -> list[tuple[str, str, list[str]]]:
    """(mount point, fstype, controllers) of every cgroup and cgroup2 mount."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fstype, _source, opts = (right.split() + ["", "", ""])[:3]
        if fstype in ("cgroup", "cgroup2"):
            out.append((left.split()[4], fstype, opts.split(",")))
    return out


def minibox_parents() -> list[str]:
    """`<mount><our group>/minibox` in every hierarchy, as conftest's leak check sees it."""
    own = _own_groups()
    parents = []
    for mnt, fstype, opts in cgroup_mounts():
        if fstype == "cgroup2":
            parents.append(f"{mnt}{own.get('', '')}/minibox")
        else:
            ctrl = next((o for o in opts if o in own), None)
            if ctrl is not None:
                parents.append(f"{mnt}{own[ctrl]}/minibox")
    return parents


def expected_group_dirs(cid: str) -> set[str]:
    """Where a container's group must be: in each v1 hierarchy of a controller minibox
    drives, and on the unified hierarchy when that is the whole (v2) or has controllers."""
    own = _own_groups()
    mounts = cgroup_mounts()
    pure_v2 = all(fstype == "cgroup2" for _, fstype, _ in mounts)
    out = set()
    for mnt, fstype, opts in mounts:
        if fstype == "cgroup2":
            if pure_v2 or read(f"{mnt}/cgroup.controllers"):
                out.add(f"{mnt}{own.get('', '')}/minibox/{cid}")
        else:
            ctrl = next((o for o in opts if o in detect.CONTROLLERS and o in own), None)
            if ctrl is not None:
                out.add(f"{mnt}{own[ctrl]}/minibox/{cid}")
    return out


def all_group_dirs() -> set[str]:
    found = set()
    for mnt, _fstype, _opts in cgroup_mounts():
        for root, _dirs, _files in os.walk(mnt):
            found.add(root)
    return found


def has_procs(d: str) -> bool:
    try:
        return bool(Path(d, "cgroup.procs").read_text().strip())
    except OSError:
        return False


def has_subgroups(d: str) -> bool:
    try:
        return any(e.is_dir() for e in os.scandir(d))
    except OSError:
        return False


def assert_group_gone(cid: str) -> None:
    """The container's group is gone in every hierarchy; so is each `minibox` parent,
    unless another container (someone else's) still has a group under it."""
    left = [f"{p}/{cid}" for p in minibox_parents() if os.path.exists(f"{p}/{cid}")]
    assert not left, f"group directories left behind: {left}"
    deadline = time.monotonic() + 2
    while True:
        # An empty parent is a leftover; one with groups belongs to other containers.
        empty = [p for p in minibox_parents() if os.path.isdir(p) and not has_subgroups(p)]
        if not empty or time.monotonic() > deadline:
            break
        time.sleep(0.05)  # another container may be between its mkdir's and rmdir's
    assert not empty, f"empty minibox parent groups left behind: {empty}"


# ---------------------------------------------------------------------------------------
# A container held in the background
# ---------------------------------------------------------------------------------------

class Held:
    """`minibox run --cidfile F ARGS rootfs sh -c 'SCRIPT; echo @@READY; read _'`.

    `out` is the output up to the marker; `group` the container's group; `release()`
    closes stdin (the script ends normally), `kill()` SIGKILLs the container's init.
    """

    def __init__(self, spawn, tmp_path: Path, args: list[object], script: str,
                 ready: bool = True) -> None:
        self.cidfile = tmp_path / f"cid-{uuid.uuid4().hex[:8]}"
        r, self._w = os.pipe()
        try:
            self.c = spawn("--cidfile", self.cidfile, *args, ROOTFS, "sh", "-c",
                           f"{script}\necho @@READY; read _ || :", stdin=r)
        finally:
            os.close(r)
        self.pid = self.c.pid
        self.cid = self.cidfile.read_text()
        self._buf = b""
        self.out = self.read_until("@@READY\n") if ready else ""
        self.group = group(self.cid)

    def read_until(self, marker: str, timeout: float = 60) -> str:
        fd = self.c.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while marker.encode() not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0, left))
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                self.c.stop()
                _, out, err = self.c.wait()
                pytest.fail(f"no {marker!r} from the container within {timeout} s; "
                            f"output {self._buf.decode() + out!r}, stderr {err!r}")
            self._buf += chunk
        text, _, rest = self._buf.decode().partition(marker)
        self._buf = rest.encode()
        return text

    def release(self) -> tuple[int, str, str]:
        if self._w is not None:
            os.close(self._w)
            self._w = None
        rc, out, err = self.c.wait(timeout=60)
        return rc, self._buf.decode() + out, err

    def kill(self) -> tuple[int, str, str]:
        os.kill(self.pid, signal.SIGKILL)
        return self.release()


@pytest.fixture
def held(spawn, tmp_path, rootfs):
    made: list[Held] = []

    def start(args: list[object], script: str, **kw) -> Held:
        h = Held(spawn, tmp_path, args, script, **kw)
        made.append(h)
        return h

    yield start
    for h in made:
        if h._w is not None:
            os.close(h._w)


def read(path: str) -> str:
    return Path(path).read_text().strip()


def inside_path(ctrl: str, v1_name: str, v2_name: str) -> str:
    """Where the container sees its own group's file (its cgroup namespace's root)."""
    lay = layout()
    if ctrl in lay.v1:
        return f"/sys/fs/cgroup/{os.path.basename(lay.v1[ctrl])}/{v1_name}"
    return f"/sys/fs/cgroup/{v2_name}" if IS_V2 else f"/sys/fs/cgroup/unified/{v2_name}"


def outside_path(g: Driver, ctrl: str, v1_name: str, v2_name: str) -> str:
    if ctrl in g.v1_dirs:
        return f"{g.v1_dirs[ctrl]}/{v1_name}"
    assert g.v2_dir, f"the container has no {ctrl} group at all: {g.dirs}"
    return f"{g.v2_dir}/{v2_name}"


def one_line_refusal(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 125, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("minibox: "), r.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------

def test_memory_limit_oom_kills_and_reports(minibox, rootfs, tmp_path):
    cidfile = tmp_path / "cid"
    r = minibox("--memory", "32m", "--cidfile", cidfile, rootfs, "sh", "-c", HOG)
    assert r.returncode == 137, (r.returncode, r.stderr)
    assert OOM_LINE in r.stderr.splitlines(), r.stderr
    assert_group_gone(cidfile.read_text())


def test_memory_limit_inside_and_outside_below_it_finishes(held):
    path = inside_path("memory", "memory.limit_in_bytes", "memory.max")
    h = held(["--memory", "32m"], f'cat {path}\nx=$(head -c 10000000 /dev/zero | tr "\\0" a)\n'
                                  'echo len=${#x}')
    assert h.out.split() == [str(32 * MiB), "len=10000000"], h.out
    outside = outside_path(h.group, "memory", "memory.limit_in_bytes", "memory.max")
    assert read(outside) == str(32 * MiB)
    assert h.group.memory_limit() == 32 * MiB
    assert h.pid in h.group.pids()
    rc, _, err = h.release()
    assert rc == 0, err
    assert "OOM" not in err
    assert_group_gone(h.cid)


def test_every_limit_lands_in_its_file_inside_and_outside(held):
    """--memory-swap, --memory-reservation, --cpu-shares/-period/-quota, --cpuset-*."""
    if IS_V2:
        files = [("memory", "memory.max", 32 * MiB),
                 ("memory", "memory.swap.max", 32 * MiB),   # v2: swap alone (64m - 32m)
                 ("memory", "memory.low", 16 * MiB),
                 ("cpu", "cpu.weight", 20),                 # runc's conversion of 512
                 ("cpu", "cpu.max", "25000 50000"),
                 ("cpuset", "cpuset.cpus", "0"),
                 ("cpuset", "cpuset.mems", "0"),
                 ("pids", "pids.max", 10)]
    else:
        files = [("memory", "memory.limit_in_bytes", 32 * MiB),
                 ("memory", "memory.memsw.limit_in_bytes", 64 * MiB),
                 ("memory", "memory.soft_limit_in_bytes", 16 * MiB),
                 ("cpu", "cpu.shares", 512),
                 ("cpu", "cpu.cfs_period_us", 50000),
                 ("cpu", "cpu.cfs_quota_us", 25000),
                 ("cpuset", "cpuset.cpus", "0"),
                 ("cpuset", "cpuset.mems", "0"),
                 ("pids", "pids.max", 10)]
        lay = layout()
        # No swap accounting on this kernel: nothing to write the memory+swap limit to.
        files = [f for f in files if os.path.exists(f"{lay.v1[f[0]]}/{f[1]}")]
    paths = [inside_path(c, n, n) for c, n, _ in files]
    script = "grep Cpus_allowed_list /proc/self/status\n" + "".join(
        f'echo "{p}=$(cat {p})"\n' for p in paths)
    h = held(["--memory", "32m", "--memory-swap", "64m", "--memory-reservation", "16m",
              "--cpu-shares", "512", "--cpu-period", "50000", "--cpu-quota", "25000",
              "--cpuset-cpus", "0", "--cpuset-mems", "0", "--pids-limit", "10"], script)
    lines = h.out.splitlines()
    assert lines[0] == "Cpus_allowed_list:\t0", h.out
    inside = dict(line.split("=", 1) for line in lines[1:])
    for (ctrl, name, want), p in zip(files, paths, strict=True):
        assert inside[p] == str(want), f"inside {p}: {inside[p]!r}, want {want!r}"
        outside = outside_path(h.group, ctrl, name, name)
        assert read(outside) == str(want), f"outside {outside}"
    rc, _, err = h.release()
    assert rc == 0, err
    assert_group_gone(h.cid)


# ---------------------------------------------------------------------------------------
# pids
# ---------------------------------------------------------------------------------------

def test_pids_limit_stops_forks_inside_not_on_the_host(held):
    path = inside_path("pids", "pids.max", "pids.max")
    # A subshell starts sleeps until a fork fails: busybox sh then aborts the subshell
    # ("can't fork") and the outer script goes on. The group holds the outer sh, the
    # subshell and the sleeps: with pids.max 10, 8 sleeps.
    h = held(["--pids-limit", "10"],
             f"cat {path}\n"
             "(i=0; while [ $i -lt 30 ]; do sleep 60 & i=$((i+1)); echo started $i; done)\n"
             "echo subshell ended")
    lines = h.out.splitlines()
    assert lines[0] == "10", h.out
    assert lines[-2:] == ["started 8", "subshell ended"], h.out
    outside = outside_path(h.group, "pids", "pids.max", "pids.max")
    assert read(outside) == "10"
    stats = h.group.stats()
    assert stats["pids_limit"] == 10 and stats["pids"] == 9, stats  # sh + 8 sleeps
    # The host is unaffected meanwhile: it forks 20 processes at once.
    host = subprocess.run(["sh", "-c", "for i in $(seq 20); do sleep 0.2 & done; wait; "
                                       "echo host forked"], capture_output=True, text=True)
    assert (host.returncode, host.stdout) == (0, "host forked\n"), host.stderr
    rc, _, err = h.release()
    assert rc == 0, err
    assert "can't fork" in err, err
    assert_group_gone(h.cid)


# ---------------------------------------------------------------------------------------
# cpu, cpuset, freezer
# ---------------------------------------------------------------------------------------

def _cpu_ns(g: Driver) -> int:
    return g.stats()["cpu_usage_ns"]


def test_cpus_half_a_cpu_and_cleanup_after_kill_9(held):
    h = held(["--cpus", "0.5"], BUSY, ready=False)
    g = h.group
    time.sleep(0.3)  # past the first period's burst
    t0, u0 = time.monotonic(), _cpu_ns(g)
    time.sleep(2)
    t1, u1 = time.monotonic(), _cpu_ns(g)
    share = (u1 - u0) / ((t1 - t0) * 1e9)
    print(f"--cpus 0.5: {share:.1%} of one CPU over {t1 - t0:.2f} s")
    assert 0.40 <= share <= 0.60, f"{share:.1%} of one CPU"
    # kill -9 of the container's init from the host: minibox reports 137, cleans up.
    rc, _, err = h.kill()
    assert rc == 137, err
    assert_group_gone(h.cid)


def test_cpuset_cpus_inside(minibox, rootfs, tmp_path):
    cidfile = tmp_path / "cid"
    r = minibox("--cpuset-cpus", "0", "--cidfile", cidfile, rootfs,
                "grep", "Cpus_allowed_list", "/proc/self/status")
    assert (r.returncode, r.stdout) == (0, "Cpus_allowed_list:\t0\n"), r.stderr
    assert_group_gone(cidfile.read_text())


def test_freezer_stops_and_resumes_the_container(held):
    h = held([], BUSY, ready=False)
    g = h.group
    time.sleep(0.2)
    g.freeze()
    assert g.frozen()
    u0 = _cpu_ns(g)
    time.sleep(0.5)
    u1 = _cpu_ns(g)
    assert u1 == u0, f"a frozen container ran for {(u1 - u0) / 1e6:.1f} ms"
    assert h.c.running()
    g.thaw()
    assert not g.frozen()
    time.sleep(0.5)
    u2 = _cpu_ns(g)
    assert u2 - u1 > 0.1e9, f"thawed, it ran only {(u2 - u1) / 1e6:.1f} ms in 0.5 s"
    rc, _, err = h.kill()
    assert rc == 137, err
    assert_group_gone(h.cid)


# ---------------------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------------------

def _extra_device() -> str:
    """A host char device outside the default allow list, that root can open."""
    for dev in ("/dev/fuse", "/dev/loop-control", "/dev/userfaultfd"):
        if os.path.exists(dev):
            return dev
    raise AssertionError("none of /dev/fuse, /dev/loop-control, /dev/userfaultfd here")


# Each probe runs in a subshell: a failed redirection of `exec` would end the script.
DEVICE_PROBES = """
echo hi >/dev/null && echo null ok
mknod /dev/xmem c 1 1 && (head -c 1 /dev/xmem >/dev/null) && echo mem read
mknod /dev/xkmsg c 1 11 && (exec 3>/dev/xkmsg) && echo kmsg opened for writing
ls {dev} >/dev/null 2>&1 && echo {dev} present
[ -e {dev} ] || mknod {dev} c {major} {minor}
(exec 3<>{dev}) && echo {dev} opened
:
"""


def _probes(dev: str) -> str:
    st = os.stat(dev)
    return DEVICE_PROBES.format(dev=dev, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev))


def test_devices_default_allow_list(minibox, rootfs):
    dev = _extra_device()
    r = minibox(rootfs, "sh", "-c", _probes(dev))
    assert r.returncode == 0, r.stderr
    # Only /dev/null works: /dev/mem (1:1), /dev/kmsg (1:11) and the extra device, made
    # with mknod (allowed), cannot be opened.
    assert r.stdout == "null ok\n", r.stdout
    assert r.stderr.count("Operation not permitted") == 3, r.stderr
    assert re.search(r"/dev/xmem: Operation not permitted", r.stderr), r.stderr
    assert re.search(r"/dev/xkmsg: Operation not permitted", r.stderr), r.stderr


def test_devices_rule_and_device_flag(held):
    dev = _extra_device()
    # kmsg opened write-only: reading it would also need CAP_SYSLOG (dmesg_restrict), so
    # only the device cgroup decides here.
    h = held(["--device-cgroup-rule", "c 1:11 w", "--device", dev], _probes(dev))
    assert h.out.splitlines() == ["null ok", "kmsg opened for writing", f"{dev} present",
                                  f"{dev} opened"], h.out
    st = os.stat(dev)
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    if "devices" in h.group.v1_dirs:
        allowed = read(f"{h.group.v1_dirs['devices']}/devices.list").splitlines()
        assert "c 1:11 w" in allowed and f"c {major}:{minor} rwm" in allowed, allowed
        assert "a *:* rwm" not in allowed and not any(a.startswith("c 1:1 ") for a in allowed)
    else:
        # v2 has no devices.list: a BPF program attached to the group is the allow list.
        assert IS_V2, h.group.dirs
        assert bpf_device_programs(h.group.v2_dir) == 1
    rc, _, err = h.release()
    assert rc == 0, err
    assert err.count("Operation not permitted") == 1, err  # /dev/xmem still denied
    assert_group_gone(h.cid)


def bpf_device_programs(d: str) -> int:
    """bpf(BPF_PROG_QUERY) of the BPF_CGROUP_DEVICE programs attached to group `d`."""
    import ctypes

    nr_bpf = {"x86_64": 321, "aarch64": 280}[os.uname().machine]
    libc = ctypes.CDLL(None, use_errno=True)
    ids = (ctypes.c_uint32 * 16)()
    attr = (ctypes.c_char * 128)()
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        # union bpf_attr, query: target_fd, attach_type (BPF_CGROUP_DEVICE = 6),
        # query_flags, attach_flags, prog_ids (pointer), prog_cnt
        struct.pack_into("<IIIIQI", attr, 0, fd, 6, 0, 0, ctypes.addressof(ids), 16)
        if libc.syscall(nr_bpf, 16, attr, 128) != 0:  # BPF_PROG_QUERY
            err = ctypes.get_errno()
            raise OSError(err, f"BPF_PROG_QUERY on {d}: {os.strerror(err)}")
    finally:
        os.close(fd)
    return struct.unpack_from("<I", attr, 24)[0]


# ---------------------------------------------------------------------------------------
# net_cls, net_prio, hugetlb, perf_event, blkio
# ---------------------------------------------------------------------------------------

def test_net_cls_and_net_prio(minibox, held, rootfs):
    flags = ["--net-cls-classid", "0x100001", "--net-prio", "lo=5"]
    if IS_V2:
        for flag in (flags[:2], flags[2:]):
            line = one_line_refusal(minibox(*flag, rootfs, "true"))
            ctrl = "net_cls" if flag[0] == "--net-cls-classid" else "net_prio"
            assert line == f"minibox: cgroup v2 has no {ctrl} controller; run without its flag"
        return
    before = layout().v1
    # Inside, each hierarchy is at /sys/fs/cgroup/<its host mount's name>, and minibox
    # mounts a missing one at /sys/fs/cgroup/<controller>.
    cls, prio = (f"/sys/fs/cgroup/{os.path.basename(before.get(c, c))}/{f}"
                 for c, f in (("net_cls", "net_cls.classid"), ("net_prio", "net_prio.ifpriomap")))
    h = held(["--explain", *flags], f"cat {cls}; grep '^lo ' {prio}")
    # (net_prio's map is of the initial network namespace's devices, the host's lo here.)
    assert h.out.splitlines() == [str(0x100001), "lo 5"], h.out
    g = h.group
    for ctrl in ("net_cls", "net_prio"):
        assert ctrl in g.v1_dirs, f"no {ctrl} hierarchy after the run: {g.v1_dirs}"
        assert h.pid in map(int, read(f"{g.v1_dirs[ctrl]}/cgroup.procs").split())
    assert read(f"{g.v1_dirs['net_cls']}/net_cls.classid") == str(0x100001)
    assert "lo 5" in read(f"{g.v1_dirs['net_prio']}/net_prio.ifpriomap").splitlines()
    rc, _, err = h.release()
    assert rc == 0, err
    for ctrl in ("net_cls", "net_prio"):
        mounted = re.search(rf'\[explain\] mount\("{ctrl}", "/sys/fs/cgroup/{ctrl}", "cgroup", '
                            rf'[A-Z_|]+, "{ctrl}"\) = 0', err)
        if ctrl in before:
            assert not mounted, f"{ctrl} was mounted already, yet minibox mounted it again"
        else:
            # minibox mounted it where a distribution would, and said so.
            print(f"{ctrl} was not mounted before: {mounted and mounted.group(0)}")
            assert mounted, f"no explain line for mounting {ctrl}:\n{err}"
    assert_group_gone(h.cid)


def _in_fresh_mount_ns(unmount: tuple[str, ...], *args: object):
    """`minibox run ARGS` in a private mount namespace where the v1 hierarchies `unmount`
    are not mounted, as on a fresh machine (the host may have them by now: an earlier
    run mounted them, as it should, for good). The host's mounts stay as they are."""
    drop = " ".join(f"umount /sys/fs/cgroup/{c} 2>/dev/null;" for c in unmount)
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f'{drop} exec "$@"', "sh", str(ROOTFS.parent / ".venv/bin/minibox"),
                        "run", *map(str, args)],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def _assert_mounted_and_used(ctrl: str, cid: str, r: subprocess.CompletedProcess[str]) -> None:
    mounted = re.search(rf'\[explain\] mount\("{ctrl}", "/sys/fs/cgroup/{ctrl}", "cgroup", '
                        rf'[A-Z_|]+, "{ctrl}"\) = 0\n +why: .*', r.stderr)
    cg = [line for line in r.stderr.splitlines() if "cgroup" in line and "[explain]" in line]
    assert mounted, (f"minibox did not mount the unmounted v1 {ctrl} hierarchy; its cgroup "
                     "steps were:\n" + "\n".join(cg[:12]))
    print(mounted.group(0))
    # The container joined a group in it, and the group was removed at the end.
    assert re.search(rf'write /sys/fs/cgroup/{ctrl}/\S*minibox/{cid}/cgroup.procs "\d+"',
                     r.stderr), ctrl
    assert re.search(rf'rmdir\("/sys/fs/cgroup/{ctrl}/\S*minibox/{cid}"\) = 0', r.stderr), ctrl
    assert re.search(rf"^\d+:{ctrl}:/$", r.stdout, re.M), r.stdout


def _assert_no_v1_mount(r: subprocess.CompletedProcess[str]) -> None:
    """A pure v2 host never gets a v1 hierarchy from minibox."""
    assert r.returncode == 0, r.stderr
    assert not re.search(r'mount\("[^"]*", "[^"]*", "cgroup",', r.stderr), r.stderr
    assert r.stdout == "0::/\n", r.stdout  # the container's /proc/self/cgroup: v2 only


def test_unmounted_net_cls_net_prio_are_mounted_and_explained(minibox, rootfs, tmp_path):
    if IS_V2:
        _assert_no_v1_mount(minibox("--explain", "--hugetlb-limit", "2MB=4m", rootfs,
                                    "cat", "/proc/self/cgroup"))
        return
    cidfile = tmp_path / "cid"
    r = _in_fresh_mount_ns(("net_cls", "net_prio"), "--explain", "--net-cls-classid",
                           "0x100001", "--net-prio", "lo=5", "--cidfile", cidfile, rootfs,
                           "sh", "-c", "cat /proc/self/cgroup /sys/fs/cgroup/net_cls/"
                           "net_cls.classid; grep '^lo ' /sys/fs/cgroup/net_prio/"
                           "net_prio.ifpriomap")
    assert r.returncode == 0, r.stderr
    for ctrl in ("net_cls", "net_prio"):
        _assert_mounted_and_used(ctrl, cidfile.read_text(), r)
    # Mounted before the container's mount namespace was copied: inside, the first
    # container already sees the hierarchies and its own values.
    assert r.stdout.splitlines()[-2:] == [str(0x100001), "lo 5"], r.stdout
    assert_group_gone(cidfile.read_text())


def test_unmounted_perf_event_is_mounted_and_explained(minibox, rootfs, tmp_path):
    """perf_event needs no flag: being in the group is all `perf stat -G` needs."""
    if IS_V2:
        _assert_no_v1_mount(minibox("--explain", rootfs, "cat", "/proc/self/cgroup"))
        return
    cidfile = tmp_path / "cid"
    r = _in_fresh_mount_ns(("perf_event",), "--explain", "--cidfile", cidfile, rootfs,
                           "cat", "/proc/self/cgroup")
    assert r.returncode == 0, r.stderr
    _assert_mounted_and_used("perf_event", cidfile.read_text(), r)
    assert_group_gone(cidfile.read_text())


def test_hugetlb_limit(held):
    sizes = sorted(os.listdir("/sys/kernel/mm/hugepages"))
    size = "2MB" if "hugepages-2048kB" in sizes else None
    assert size, f"no 2 MB huge pages in this kernel: {sizes}"
    h = held(["--hugetlb-limit", f"{size}=4m"], "true")
    lay = layout()
    path = outside_path(h.group, "hugetlb", f"hugetlb.{size}.limit_in_bytes",
                        f"hugetlb.{size}.max")
    assert ("hugetlb" in lay.v1) == path.endswith(".limit_in_bytes"), path
    assert read(path) == str(4 * MiB)
    assert h.pid in map(int, read(f"{os.path.dirname(path)}/cgroup.procs").split())
    rc, _, err = h.release()
    assert rc == 0, err
    assert_group_gone(h.cid)


def _perf_works() -> str:
    """'' when `perf stat -e task-clock true` works here, else why not."""
    if not shutil.which("perf"):
        return "perf is not installed"
    r = subprocess.run(["perf", "stat", "-e", "task-clock", "true"], capture_output=True,
                       text=True)
    return "" if r.returncode == 0 else f"perf stat fails here: {r.stderr.strip()[:200]}"


def test_perf_event_counts_the_container(held):
    h = held([], f"({BUSY}) &")
    g = h.group
    lay = layout()
    if IS_V2:
        # v2: perf_event is built into the unified hierarchy; -G names the group there.
        gdir, mnt = g.v2_dir, lay.unified
    else:
        assert "perf_event" in g.v1_dirs, (
            "the container is in no perf_event group: the host has not mounted the v1 "
            f"perf_event hierarchy and minibox did not mount it (hierarchies: {lay.v1})")
        gdir, mnt = g.v1_dirs["perf_event"], lay.v1["perf_event"]
    assert h.pid in map(int, read(f"{gdir}/cgroup.procs").split())
    why = _perf_works()
    if why:
        print(f"perf stat -G not tried: {why}; membership checked only")
    else:
        rel = os.path.relpath(gdir, mnt)
        r = subprocess.run(["perf", "stat", "-e", "task-clock", "-G", rel, "-a", "--",
                            "sleep", "1"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        m = re.search(r"([\d.,]+)\s+msec\s+task-clock", r.stderr)
        assert m, r.stderr
        ms = float(m.group(1).replace(",", ""))
        print(f"perf stat -G {rel}: {ms:.0f} msec task-clock in 1 s")
        assert ms > 100, r.stderr
    rc, _, err = h.release()
    assert rc == 0, err
    assert_group_gone(h.cid)


def _weight_supported() -> bool:
    """What the host's files say about a blkio weight (not what minibox thinks)."""
    lay = layout()
    if "blkio" in lay.v1:
        # The weight files are "not on root": a child group has them when the kernel has
        # CFQ's blkio.weight or a registered BFQ (listed as a scheduler of some disk).
        root = lay.v1["blkio"]
        if any(os.path.exists(f"{root}/{n}") for n in ("blkio.weight", "blkio.bfq.weight")):
            return True
        return any("bfq" in read(str(p)) for p in Path("/sys/block").glob("*/queue/scheduler"))
    if "io" not in lay.v2_controllers:
        return False
    # v2: io.weight comes with blk-iocost (io.cost.qos at the root), io.bfq.weight with BFQ.
    bfq = any("[bfq]" in (read(p) if os.path.exists(p) else "")
              for p in map(str, Path("/sys/block").glob("*/queue/scheduler")))
    return os.path.exists(f"{lay.unified}/io.cost.qos") or bfq


def test_blkio_weight_applied_or_refused(minibox, held, rootfs):
    if not _weight_supported():
        line = one_line_refusal(minibox("--blkio-weight", "500", rootfs, "true"))
        assert "--blkio-weight" in line, line
        return
    h = held(["--blkio-weight", "500"], "true")
    g = h.group
    if "blkio" in g.v1_dirs:
        d = g.v1_dirs["blkio"]
        name = "blkio.weight" if os.path.exists(f"{d}/blkio.weight") else "blkio.bfq.weight"
        assert read(f"{d}/{name}").split()[-1] == "500"
    else:
        d = g.v2_dir
        if os.path.exists(f"{d}/io.weight"):
            want = f"default {1 + (500 - 10) * 9999 // 990}"  # runc's blkio->io mapping
            assert read(f"{d}/io.weight").splitlines()[0] == want
        else:
            assert read(f"{d}/io.bfq.weight").splitlines()[0] == "default 500"
    rc, _, err = h.release()
    assert rc == 0, err
    assert_group_gone(h.cid)


# ---------------------------------------------------------------------------------------
# Bad values: refused before anything is created
# ---------------------------------------------------------------------------------------

def _unavailable_cpu() -> str:
    online = Path("/sys/devices/system/cpu/online").read_text().strip()
    return str(max(int(x) for x in re.split(r"[-,]", online)) + 8)


BAD = {
    "memory-unit": (["--memory", "10x"], '"10x" for "--memory"'),
    "cpus-beyond-host": (["--cpus", str((os.cpu_count() or 1) + 3)], "Range of CPUs"),
    "cpuset-cpu-offline": (["--cpuset-cpus", _unavailable_cpu()], "not available"),
    "pids-negative": (["--pids-limit", "-5"], "--pids-limit -5"),
    "swap-without-memory": (["--memory-swap", "1g"], "Memory limit"),
    "hugetlb-size": (["--hugetlb-limit", "3MB=1m"], '"3MB=1m"'),
}


def _state_of_name(name: str) -> list[str]:
    """Entries under /run/minibox that belong to a container called `name`."""
    found = []
    if os.path.lexists(f"{STATE_ROOT}/names/{name}"):
        found.append(f"{STATE_ROOT}/names/{name}")
    for state in Path(STATE_ROOT, "containers").glob("*/state.json"):
        try:
            if f'"{name}"' in state.read_text():
                found.append(str(state.parent))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("case", list(BAD))
def test_bad_value_refused_before_anything_exists(minibox, rootfs, case):
    args, words = BAD[case]
    groups_before = all_group_dirs()
    name = f"cgtest-{uuid.uuid4().hex[:12]}"
    line = one_line_refusal(minibox("--name", name, *args, rootfs, "true"))
    assert words in line, line
    # Nothing new under any cgroup mount. Other engineers' containers come and go
    # meanwhile: a group of theirs soon has processes or subgroups, or is gone; what the
    # refused run could have left would stay, empty, for good.
    new = all_group_dirs() - groups_before
    deadline = time.monotonic() + 1.5
    while new and time.monotonic() < deadline:
        time.sleep(0.1)
        new = {d for d in new if os.path.isdir(d) and not has_procs(d)
               and not has_subgroups(d)}
    assert not new, f"groups created by a refused run: {sorted(new)}"
    assert _state_of_name(name) == [], _state_of_name(name)


# ---------------------------------------------------------------------------------------
# --explain
# ---------------------------------------------------------------------------------------

def test_explain_shows_every_cgroup_step(minibox, rootfs, tmp_path):
    cidfile = tmp_path / "cid"
    r = minibox("--explain", "--memory", "32m", "--pids-limit", "10", "--cidfile", cidfile,
                rootfs, "true")
    assert r.returncode == 0, r.stderr
    g = group(cidfile.read_text())
    err = r.stderr
    # One group in each hierarchy (worked out here from mountinfo, not by minibox).
    assert set(g.dirs) == expected_group_dirs(g.cid), g.dirs
    for d in g.dirs:
        assert f'[explain] mkdir("{d}") = 0' in err, d
        assert re.search(rf'\[explain\] write {re.escape(d)}/cgroup.procs "\d+" = ok', err), d
        assert f'[explain] rmdir("{d}") = 0' in err, d
    mem = outside_path(g, "memory", "memory.limit_in_bytes", "memory.max")
    assert f'[explain] write {mem} "{32 * MiB}" = ok' in err
    pids = outside_path(g, "pids", "pids.max", "pids.max")
    assert f'[explain] write {pids} "10" = ok' in err
    assert_group_gone(g.cid)


def test_one_driver_per_layout():
    """open_group picks the driver of the host's layout; each knows where its group is
    (Layouts made by hand here: this host has only one layout of its own)."""
    from minibox.cgroups.detect import Layout
    from minibox.cgroups.driver import HybridDriver, V1Driver, V2Driver

    v1 = Layout()
    v1.v1 = {"memory": "/sys/fs/cgroup/memory", "pids": "/sys/fs/cgroup/pids"}
    v2 = Layout()
    v2.unified, v2.v2_controllers = "/sys/fs/cgroup", {"memory", "pids"}
    hybrid = Layout()
    hybrid.v1, hybrid.unified = dict(v1.v1), "/sys/fs/cgroup/unified"
    for lay, cls in ((v1, V1Driver), (v2, V2Driver), (hybrid, HybridDriver)):
        g = open_group("c" * 64, lay)
        assert type(g) is cls and g.kind == lay.kind
    g = open_group("c" * 64, v1)
    assert g.v2_dir is None and sorted(g.v1_dirs) == ["memory", "pids"]
    assert g.v1_dirs["memory"].endswith(f"/minibox/{'c' * 64}")
    g = open_group("c" * 64, v2)
    assert g.v1_dirs == {} and g.v2_dir.endswith(f"/minibox/{'c' * 64}")
    # Hybrid: a unified group only when a controller sits on the unified hierarchy.
    assert open_group("c" * 64, hybrid).v2_dir is None
    hybrid.v2_controllers = {"hugetlb"}
    g = open_group("c" * 64, hybrid)
    assert g.v2_dir and g.v2_dir.startswith("/sys/fs/cgroup/unified") and len(g.dirs) == 3
