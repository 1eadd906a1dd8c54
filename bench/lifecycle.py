#!/usr/bin/env python3
"""Detached-container lifecycle benchmark: minibox vs podman.

Three measurements, side by side with podman (Debian's, crun underneath), in one run:

1. Round trip: `run -d` of a busybox container running `sleep 1000`, then `rm -f`
   of it.  Interleaved: every round runs each tool once, in an order shuffled per
   round (seeded, reproducible), so drift on the machine hits both tools alike.
2. Memory: N detached `sleep 1000` containers per tool; the proportional set size
   (PSS, /proc/PID/smaps_rollup) of the process that stays with each container --
   minibox-monitor for minibox, conmon for podman -- summed and divided by N.
3. `ps` wall time with M containers running (median of many calls, interleaved).

Everything the script creates -- containers, the podman image, the private minibox
state dir -- is removed at the end, also on Ctrl-C/SIGTERM.  Processes are ended
only by container id (`rm -f`), never by name.

Needs root.  Stdlib only, so any Python 3 runs it.

    sudo python3 bench/lifecycle.py                     # 40 rounds, 50 and 200 containers
    sudo python3 bench/lifecycle.py --rounds 60 --json /tmp/lifecycle.json
    sudo python3 bench/lifecycle.py --no-podman-ps      # skip the 200 podman containers
"""

import argparse
import json
import os
import platform
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WORKLOAD = ["sleep", "1000"]
# What podman needs on this kind of host: no systemd (cgroupfs, file events), root
# cannot raise rlimits (so ask for what is already allowed), no bridge.
PODMAN_GLOBAL = ["--cgroup-manager=cgroupfs", "--events-backend=file"]
PODMAN_RUN = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
              "--network=none"]
CHUNK = 50  # ids per `rm -f` command when tearing down many containers


def warn(msg):
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


def note(msg):
    print(msg, flush=True)


def progress(msg):
    if sys.stdout.isatty():
        print("\r" + msg.ljust(60)[:79], end="", flush=True)


def progress_done():
    if sys.stdout.isatty():
        print("\r" + " " * 79 + "\r", end="", flush=True)


def first_line(s):
    s = (s or "").strip()
    return s.splitlines()[0] if s else ""


class ToolError(Exception):
    pass


# --------------------------------------------------------------------------
# Running and timing
# --------------------------------------------------------------------------

class Runner:
    """posix_spawn + waitpid with stdio on files, timed with perf_counter.

    Files rather than pipes: a detached container's monitor (minibox-monitor,
    conmon) outlives the command that started it, and whatever it inherits
    stays open; a pipe would then never reach end-of-file.  Each child gets
    its own process group, so a Ctrl-C on the terminal reaches only this
    script, which lets the running command finish and then removes whatever
    it created.
    """

    def __init__(self, workdir):
        self.outpath = os.path.join(workdir, "stdout.log")
        self.errpath = os.path.join(workdir, "stderr.log")
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.last_cpu = 0.0  # user+sys seconds of the last command (and what it reaped)

    def run(self, argv):
        """Run argv once; return (seconds, returncode, stdout, stderr).

        The command's CPU time (from wait4, so it includes the children it
        waited for, not a detached monitor) is left in self.last_cpu: on a
        loaded machine it says how much of the wall time was the tool's own work.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        outfd = os.open(self.outpath, flags, 0o600)
        errfd = os.open(self.errpath, flags, 0o600)
        try:
            actions = [
                (os.POSIX_SPAWN_DUP2, self.devnull, 0),
                (os.POSIX_SPAWN_DUP2, outfd, 1),
                (os.POSIX_SPAWN_DUP2, errfd, 2),
            ]
            t0 = time.perf_counter()
            pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions,
                                 setpgroup=0)
            try:
                _, status, ru = os.wait4(pid, 0)
            except BaseException:
                # Interrupted: let the command finish (it is not ours to kill
                # half-way), so that cleanup finds a consistent container.
                while True:
                    try:
                        os.waitpid(pid, 0)
                        break
                    except ChildProcessError:
                        break
                    except KeyboardInterrupt:
                        continue
                raise
            dt = time.perf_counter() - t0
            self.last_cpu = ru.ru_utime + ru.ru_stime
        finally:
            os.close(outfd)
            os.close(errfd)
        rc = os.waitstatus_to_exitcode(status)
        with open(self.outpath, errors="replace") as f:
            out = f.read()
        with open(self.errpath, errors="replace") as f:
            err = f.read().strip()
        return dt, rc, out, err


def check(result, what):
    dt, rc, out, err = result
    if rc != 0:
        raise ToolError(f"{what}: exit {rc}: {err[-600:] or '(no stderr)'}")
    return dt, out


def make_fds_private():
    """Stop fds this script inherited from its caller from reaching the monitors.

    Python's own fds are close-on-exec already, but a caller's extra fd (say a
    pipe on fd 9) is not; minibox-monitor and conmon would keep it open for the
    life of the container.
    """
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


# --------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------

def proc_cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except (FileNotFoundError, ProcessLookupError):
        return []


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def smaps_rollup(pid):
    """{'Rss': kB, 'Pss': kB, 'Private': kB} of one process."""
    vals = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                vals[key] = int(parts[0])
    return {"Rss": vals.get("Rss", 0), "Pss": vals.get("Pss", 0),
            "Private": vals.get("Private_Clean", 0) + vals.get("Private_Dirty", 0)}


def own_cgroup_candidates():
    """Directories under which minibox may have put `minibox/<id>` for our children.

    minibox puts a container's group at `<caller's group>/minibox/<id>` in every
    hierarchy; this pairs each cgroup mount with each of our own group paths
    (cheap, and a wrong pairing simply does not exist).
    """
    mounts = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if rfields and rfields[0] in ("cgroup", "cgroup2"):
                mounts.append((fields[3], fields[4]))  # (root, mount point)
    paths = set()
    with open("/proc/self/cgroup") as f:
        for line in f:
            paths.add(line.strip().split(":", 2)[2])
    out = set()
    for root, mnt in mounts:
        for p in paths:
            rel = p[len(root):] if root != "/" and p.startswith(root) else p
            out.add(os.path.normpath(mnt + "/" + rel.lstrip("/")))
    return sorted(out)


# --------------------------------------------------------------------------
# The two tools
# --------------------------------------------------------------------------

class Tool:
    name = "?"
    monitor_name = "?"

    def __init__(self, runner):
        self.runner = runner
        self.live = set()       # full ids we started and have not removed
        self.started = []       # every id we started, for the leak checks

    def start(self):
        """`run -d`; return (seconds, full id)."""
        dt, out = check(self.runner.run(self.run_argv()), f"{self.name} run -d")
        lines = out.split()
        if not lines:
            raise ToolError(f"{self.name} run -d printed no id")
        cid = lines[-1]
        self.live.add(cid)
        self.started.append(cid)
        return dt, cid

    def remove(self, ids):
        """`rm -f ids...`; return seconds."""
        dt, _ = check(self.runner.run(self.rm_argv(ids)), f"{self.name} rm -f")
        self.live.difference_update(ids)
        return dt

    def remove_many(self, ids):
        total = 0.0
        ids = list(ids)
        for i in range(0, len(ids), CHUNK):
            total += self.remove(ids[i:i + CHUNK])
        return total

    def ps(self):
        dt, out = check(self.runner.run(self.ps_argv()), f"{self.name} ps")
        return dt, out

    def count_running(self):
        _, out = check(self.runner.run(self.ps_argv() + ["-q"]), f"{self.name} ps -q")
        return len(out.split())

    def monitor_pids(self, ids):
        """{id: pid of the process that stays with the container}, verified via /proc."""
        found = self._monitor_pids(ids)
        out = {}
        for cid in ids:
            pid = found.get(cid)
            if not pid or not self._is_monitor(pid, cid):
                pid = self._scan_for_monitor(cid)
            if not pid:
                raise ToolError(f"{self.name}: no {self.monitor_name} found for {cid[:12]}")
            out[cid] = pid
        return out

    def _is_monitor(self, pid, cid):
        return proc_comm(pid) == self.monitor_name and \
            any(cid in a for a in proc_cmdline(pid))

    def _scan_for_monitor(self, cid):
        for name in os.listdir("/proc"):
            if name.isdigit() and self._is_monitor(int(name), cid):
                return int(name)
        return None

    def leftover_processes(self, ids, wait=10.0):
        """Processes still serving containers we removed, after up to `wait` s."""
        ids = set(ids)
        deadline = time.monotonic() + wait
        me = os.getpid()
        while True:
            alive = []
            for name in os.listdir("/proc"):
                if name.isdigit() and int(name) != me:
                    argv = proc_cmdline(int(name))
                    if argv and self._serves(argv, ids):
                        alive.append((int(name), " ".join(argv)[:160]))
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.1)


class Minibox(Tool):
    name = "minibox"
    monitor_name = "minibox-monitor"

    def __init__(self, runner, binary, rootfs, state):
        super().__init__(runner)
        self.binary = binary
        self.rootfs = rootfs
        self.state = state
        os.makedirs(state, exist_ok=True)
        self.cgroup_bases = own_cgroup_candidates()

    def base(self):
        return [self.binary, "--root", self.state]

    def run_argv(self):
        return self.base() + ["run", "-d", self.rootfs, *WORKLOAD]

    def rm_argv(self, ids):
        return self.base() + ["rm", "-f", *ids]

    def ps_argv(self):
        return self.base() + ["ps"]

    def version(self):
        return tool_version([self.binary, "--version"])

    def _serves(self, argv, ids):
        # The monitor and its `_finish` hand-over both name our private state dir.
        return any(self.state in a for a in argv)

    def _monitor_pids(self, ids):
        _, out = check(self.runner.run(self.base() + ["inspect", *ids]), "minibox inspect")
        return {c["Id"]: c["State"].get("MonitorPid") for c in json.loads(out)}

    def known_ids(self):
        ids = set(self.live)
        r = self.runner.run(self.base() + ["ps", "-a", "-q", "--no-trunc"])
        if r[1] == 0:
            ids.update(r[2].split())
        cdir = os.path.join(self.state, "containers")
        if os.path.isdir(cdir):
            ids.update(os.listdir(cdir))
        return ids

    def leaks(self, ids):
        """What is left of containers we removed: state, processes, cgroups, mounts."""
        found = []
        r = self.runner.run(self.base() + ["ps", "-a", "-q"])
        if r[1] != 0:
            found.append(f"`minibox ps -a -q` failed: {first_line(r[3])}")
        elif r[2].split():
            found.append(f"`minibox ps -a` still lists {len(r[2].split())} container(s)")
        cdir = os.path.join(self.state, "containers")
        if os.path.isdir(cdir) and os.listdir(cdir):
            found.append(f"{len(os.listdir(cdir))} state dir(s) left in {cdir}")
        alive = self.leftover_processes(ids)
        if alive:
            found.append(f"{len(alive)} process(es) still running for removed containers, "
                         f"e.g. pid {alive[0][0]}: {alive[0][1]}")
        groups = [f"{b}/minibox/{c}" for b in self.cgroup_bases for c in ids
                  if os.path.isdir(f"{b}/minibox/{c}")]
        if groups:
            found.append(f"{len(groups)} cgroup dir(s) left, e.g. {groups[0]}")
        with open("/proc/self/mountinfo") as f:
            mounts = [ln for ln in f if self.state in ln or any(c in ln for c in ids)]
        if mounts:
            found.append(f"{len(mounts)} mount(s) left, e.g. {mounts[0].split()[4]}")
        return found

    def cleanup(self):
        ids = sorted(self.known_ids())
        for i in range(0, len(ids), CHUNK):
            self.runner.run(self.rm_argv(ids[i:i + CHUNK]))
        self.live.clear()
        shutil.rmtree(self.state, ignore_errors=True)


class Podman(Tool):
    name = "podman"
    monitor_name = "conmon"

    def __init__(self, runner, binary, rootfs):
        super().__init__(runner)
        self.binary = binary
        self.rootfs = rootfs
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.label = f"minibox-bench={token}"
        self.image = f"localhost/minibox-bench-busybox:{token}"
        self.image_made = False

    def base(self):
        return [self.binary, *PODMAN_GLOBAL]

    def run_argv(self):
        return self.base() + ["run", "-d", *PODMAN_RUN, "--label", self.label,
                              self.image, *WORKLOAD]

    def rm_argv(self, ids):
        # -t 0: straight to SIGKILL, like `minibox rm -f` (and docker's).  podman's
        # default would try SIGTERM for 10 s first, which `sleep` as PID 1 ignores.
        return self.base() + ["rm", "-f", "-t", "0", *ids]

    def ps_argv(self):
        return self.base() + ["ps"]

    def version(self):
        return tool_version([self.binary, "--version"])

    def make_image(self):
        """`tar -C ROOTFS -c . | podman import - TAG` (no registry needed)."""
        tar = subprocess.Popen(["tar", "-C", self.rootfs, "-c", "."],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
        self.image_made = True  # from here on, cleanup tries to remove it
        imp = subprocess.run(self.base() + ["import", "-", self.image], stdin=tar.stdout,
                             capture_output=True, text=True, start_new_session=True)
        tar.stdout.close()
        tar_err = tar.stderr.read().decode(errors="replace")
        tar.wait()
        if tar.returncode != 0:
            raise ToolError(f"tar of {self.rootfs} failed: {tar_err.strip()}")
        if imp.returncode != 0:
            raise ToolError(f"podman import failed: {imp.stderr.strip()}")

    def _serves(self, argv, ids):
        # conmon names its container with `-c ID`; sleep (the workload) never does.
        return os.path.basename(argv[0]) == "conmon" and any(a in ids for a in argv)

    def _monitor_pids(self, ids):
        _, out = check(self.runner.run(
            self.base() + ["inspect", "--format", "{{.Id}} {{.State.ConmonPid}}", *ids]),
            "podman inspect")
        pids = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                pids[parts[0]] = int(parts[1])
        return pids

    def labelled(self):
        r = self.runner.run(self.base() + ["ps", "-a", "-q", "--no-trunc", "--filter",
                                           f"label={self.label}"])
        return r, (r[2].split() if r[1] == 0 else [])

    def leaks(self, ids):
        found = []
        r, left = self.labelled()
        if r[1] != 0:
            found.append(f"`podman ps -a` failed: {first_line(r[3])}")
        elif left:
            found.append(f"`podman ps -a` still lists {len(left)} of our container(s)")
        alive = self.leftover_processes(ids)
        if alive:
            found.append(f"{len(alive)} conmon process(es) still running for removed "
                         f"containers, e.g. pid {alive[0][0]}: {alive[0][1]}")
        return found

    def cleanup(self):
        _, left = self.labelled()
        ids = sorted(set(left) | self.live)
        for i in range(0, len(ids), CHUNK):
            self.runner.run(self.rm_argv(ids[i:i + CHUNK]))
        self.live.clear()
        if self.image_made:
            r = self.runner.run(self.base() + ["rmi", "-f", self.image])
            if r[1] != 0 and "image not known" not in r[3]:
                warn(f"podman rmi {self.image} failed: {first_line(r[3])}")
            self.image_made = False


def tool_version(argv):
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=20)
        return r.stdout.strip().splitlines()[0] if r.stdout.strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------------------
# crun (under podman) on a hybrid cgroup host
# --------------------------------------------------------------------------

def fix_hybrid_cgroups_for_crun():
    """Bind hugetlb to its own v1 hierarchy if it sits on the unified one.

    crun 1.8 refuses to run on a hybrid host while any controller is on the
    unified hierarchy; on this kind of machine hugetlb is the only one there.
    A v1 hierarchy stays bound after umount, so this is not undone (as in
    bench/start.py).  Returns a description of what was done, or None.
    """
    unified = "/sys/fs/cgroup/unified/cgroup.controllers"
    try:
        with open(unified) as f:
            on_unified = f.read().split()
    except FileNotFoundError:
        return None
    if on_unified != ["hugetlb"]:
        return None
    target = "/sys/fs/cgroup/hugetlb"
    os.makedirs(target, exist_ok=True)
    r = subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "hugetlb", target],
                       stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise ToolError(f"mount hugetlb as v1 failed: {r.stderr.strip()}")
    return (f"mounted the hugetlb controller as cgroup v1 on {target} "
            "(it was on the unified hierarchy, which crun rejects)")


# --------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------

def percentile(sorted_xs, p):
    # Linear interpolation between closest ranks (numpy's default method).
    if not sorted_xs:
        return float("nan")
    k = (len(sorted_xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (k - lo)


def summarize(samples):
    xs = sorted(samples)
    if not xs:
        return None
    return {
        "n": len(xs),
        "median_ms": percentile(xs, 50),
        "p10_ms": percentile(xs, 10),
        "p90_ms": percentile(xs, 90),
        "min_ms": xs[0],
        "max_ms": xs[-1],
        "mean_ms": sum(xs) / len(xs),
    }


def loadavg():
    return [round(x, 2) for x in os.getloadavg()]


# --------------------------------------------------------------------------
# The three measurements
# --------------------------------------------------------------------------

def phase_roundtrip(tools, rounds, warmup, rng):
    """run -d + rm -f, interleaved, order shuffled per round."""
    res = {t.name: {"status": "ok", "reason": "", "run": [], "rm": [], "total": [],
                    "run_cpu": [], "rm_cpu": [], "total_cpu": []} for t in tools}
    live = []
    for t in tools:
        try:
            for _ in range(warmup):
                _, cid = t.start()
                t.remove([cid])
            live.append(t)
        except ToolError as e:
            res[t.name].update(status="unavailable", reason=str(e))
            warn(f"{t.name} failed during warm-up, left out of the round trip: {e}")
    for r in range(rounds):
        order = list(live)
        rng.shuffle(order)
        for t in order:
            if res[t.name]["status"] != "ok":
                continue
            try:
                dt_run, cid = t.start()
                cpu_run = t.runner.last_cpu
                dt_rm = t.remove([cid])
                cpu_rm = t.runner.last_cpu
            except ToolError as e:
                res[t.name].update(status="failed", reason=f"round {r + 1}: {e}")
                warn(f"{t.name} failed in round {r + 1}: {e}")
                continue
            res[t.name]["run"].append(dt_run * 1000)
            res[t.name]["rm"].append(dt_rm * 1000)
            res[t.name]["total"].append((dt_run + dt_rm) * 1000)
            res[t.name]["run_cpu"].append(cpu_run * 1000)
            res[t.name]["rm_cpu"].append(cpu_rm * 1000)
            res[t.name]["total_cpu"].append((cpu_run + cpu_rm) * 1000)
        progress(f"round trip: round {r + 1}/{rounds}")
    progress_done()
    for v in res.values():
        v["stats"] = {k: summarize(v[k]) for k in
                      ("run", "rm", "total", "run_cpu", "rm_cpu", "total_cpu")}
    return res


def fill(tools, n, rng, what):
    """Start n detached containers per tool, interleaved; per-tool ids and run -d times."""
    res = {t.name: {"status": "ok", "reason": "", "ids": [], "run_ms": []} for t in tools}
    for i in range(n):
        order = list(tools)
        rng.shuffle(order)
        for t in order:
            v = res[t.name]
            if v["status"] != "ok":
                continue
            try:
                dt, cid = t.start()
            except ToolError as e:
                v.update(status="failed", reason=f"container {i + 1} of {n}: {e}")
                warn(f"{t.name}: {v['reason']}")
                continue
            v["ids"].append(cid)
            v["run_ms"].append(dt * 1000)
        progress(f"{what}: started {i + 1}/{n} per tool")
    progress_done()
    return res


def memory_of(tool, ids):
    """Per-container PSS/RSS/private of the monitors of ids, in KiB."""
    pids = tool.monitor_pids(ids)
    tot = {"Pss": 0, "Rss": 0, "Private": 0}
    for pid in pids.values():
        m = smaps_rollup(pid)
        for k in tot:
            tot[k] += m[k]
    n = len(ids)
    return {"containers": n, "process": tool.monitor_name,
            "pss_kib": tot["Pss"] / n, "rss_kib": tot["Rss"] / n,
            "private_kib": tot["Private"] / n, "pss_total_kib": tot["Pss"]}


def teardown(tools, filled, leaks):
    """Remove what fill() started; then look for anything left behind."""
    times = {}
    for t in tools:
        ids = filled[t.name]["ids"]
        if not ids:
            continue
        try:
            times[t.name] = t.remove_many(ids)
        except ToolError as e:
            warn(f"{t.name}: removing {len(ids)} containers: {e}")
            leaks.append(f"{t.name}: rm -f of {len(ids)} containers failed: {e}")
        for what in t.leaks(ids):
            leaks.append(f"{t.name}: {what}")
            warn(f"{t.name} left something behind: {what}")
    return times


def phase_memory(tools, n, rng, settle, leaks):
    filled = fill(tools, n, rng, "memory")
    out = {}
    try:
        time.sleep(settle)  # let every monitor finish its start-up work
        for t in tools:
            v = filled[t.name]
            if v["status"] != "ok":
                out[t.name] = {"status": v["status"], "reason": v["reason"]}
                continue
            try:
                out[t.name] = {"status": "ok", **memory_of(t, v["ids"])}
            except (ToolError, OSError) as e:
                out[t.name] = {"status": "failed", "reason": str(e)}
                warn(f"{t.name}: memory measurement failed: {e}")
            out[t.name]["run_ms"] = summarize(v["run_ms"])
    finally:
        rm_s = teardown(tools, filled, leaks)
    for name, s in rm_s.items():
        out.setdefault(name, {})["teardown_s"] = s
    return out


def phase_ps(tools, n, calls, rng, podman_ps, settle, leaks):
    use = [t for t in tools if t.name != "podman" or podman_ps]
    filled = fill(use, n, rng, "ps")
    out = {}
    try:
        time.sleep(settle)
        live = []
        for t in use:
            v = filled[t.name]
            out[t.name] = {"status": v["status"], "reason": v["reason"],
                           "fill_run_ms": summarize(v["run_ms"]),
                           "fill_first20_ms": summarize(v["run_ms"][:20]),
                           "fill_last20_ms": summarize(v["run_ms"][-20:])}
            if v["status"] != "ok":
                continue
            try:
                out[t.name]["listed"] = t.count_running()
                t.ps()  # warm-up, unmeasured
                out[t.name]["memory"] = memory_of(t, v["ids"])
                live.append(t)
            except (ToolError, OSError) as e:
                out[t.name].update(status="failed", reason=str(e))
                warn(f"{t.name}: {e}")
        samples = {t.name: [] for t in live}
        cpu = {t.name: [] for t in live}
        for r in range(calls):
            order = list(live)
            rng.shuffle(order)
            for t in order:
                if out[t.name]["status"] != "ok":
                    continue
                try:
                    dt, _ = t.ps()
                except ToolError as e:
                    out[t.name].update(status="failed", reason=f"call {r + 1}: {e}")
                    continue
                samples[t.name].append(dt * 1000)
                cpu[t.name].append(t.runner.last_cpu * 1000)
            progress(f"ps: call {r + 1}/{calls}")
        progress_done()
        for name, xs in samples.items():
            out[name]["samples_ms"] = xs
            out[name]["stats"] = summarize(xs)
            out[name]["cpu_samples_ms"] = cpu[name]
            out[name]["cpu_stats"] = summarize(cpu[name])
    finally:
        rm_s = teardown(use, filled, leaks)
    for name, s in rm_s.items():
        out.setdefault(name, {})["teardown_s"] = s
    return out


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Detached-container lifecycle benchmark: minibox vs podman "
                    "(run -d + rm -f round trip, monitor memory, ps with many containers).")
    p.add_argument("--rounds", type=int, default=40,
                   help="measured round-trip rounds, each tool once per round "
                        "(default 40; use at least 30)")
    p.add_argument("--warmup", type=int, default=3,
                   help="unmeasured round trips per tool first (default 3); the first "
                        "one also checks the tool works")
    p.add_argument("--containers", type=int, default=50, metavar="N",
                   help="running containers per tool for the memory measurement (default 50)")
    p.add_argument("--ps-containers", type=int, default=200, metavar="M",
                   help="running containers per tool while timing ps (default 200)")
    p.add_argument("--ps-calls", type=int, default=15,
                   help="timed ps calls per tool (default 15; use at least 10)")
    p.add_argument("--no-podman-ps", action="store_true",
                   help="time only `minibox ps` (skips starting M podman containers)")
    p.add_argument("--no-podman", action="store_true", help="benchmark minibox alone")
    p.add_argument("--only", choices=("roundtrip", "memory", "ps"), action="append",
                   help="run only this measurement (repeatable)")
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds to wait after starting many containers (default 1)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed for the per-round shuffle (default 1)")
    p.add_argument("--rootfs", default=os.path.join(REPO, "rootfs"),
                   help="busybox rootfs (default: rootfs/ in the repo)")
    p.add_argument("--minibox", default=os.path.join(REPO, ".venv", "bin", "minibox"),
                   help="minibox executable (default: .venv/bin/minibox in the repo)")
    p.add_argument("--podman", default="podman", help="podman binary (default: on PATH)")
    p.add_argument("--json", metavar="FILE", help="also write all numbers to FILE")
    args = p.parse_args(argv)
    for name in ("rounds", "warmup", "containers", "ps_containers", "ps_calls"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


class Signalled(KeyboardInterrupt):
    pass


def on_signal(signum, frame):
    # SIGINT/SIGTERM/SIGHUP all behave like Ctrl-C: the finally-blocks remove everything.
    raise Signalled


def on_signal_during_cleanup(signum, frame):
    warn("still cleaning up (removing containers and the image); please wait")


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench/lifecycle.py must run as root (containers need it): "
                 "sudo python3 bench/lifecycle.py")
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and then
    # Python installs no KeyboardInterrupt handler of its own.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    make_fds_private()

    rootfs = os.path.realpath(args.rootfs)
    if not os.path.lexists(os.path.join(rootfs, "bin", "sleep")):
        sys.exit(f"{args.rootfs}: no bin/sleep in this rootfs; build it with the "
                 "project's setup (.ci/setup) or pass --rootfs")
    minibox_bin = os.path.abspath(args.minibox)
    if not os.access(minibox_bin, os.X_OK):
        sys.exit(f"minibox not found at {minibox_bin} (pass --minibox)")
    podman_bin = None if args.no_podman else shutil.which(args.podman)
    if not args.no_podman and not podman_bin:
        warn(f"podman not found ({args.podman}); apt-get install -y podman. "
             "Benchmarking minibox alone")
    phases = args.only or ["roundtrip", "memory", "ps"]
    if args.rounds < 30 and "roundtrip" in phases:
        warn(f"--rounds {args.rounds} is below 30; the percentiles will be noisy")
    if args.ps_calls < 10 and "ps" in phases:
        warn(f"--ps-calls {args.ps_calls} is below 10; the median will be noisy")

    workdir = os.path.realpath(tempfile.mkdtemp(prefix="minibox-lifecycle-"))
    runner = Runner(workdir)
    rng = random.Random(args.seed)
    tools = []
    host_changes = []
    leaks = []
    unavailable = {}
    results = {}
    info = {}
    interrupted = False
    try:
        mb = Minibox(runner, minibox_bin, rootfs, os.path.join(workdir, "minibox-state"))
        tools.append(mb)
        if podman_bin:
            pm = Podman(runner, podman_bin, rootfs)
            tools.append(pm)
            try:
                pm.make_image()
                try:
                    _, cid = pm.start()
                except ToolError as e:
                    if "hybrid" not in str(e):
                        raise
                    did = fix_hybrid_cgroups_for_crun()
                    if not did:
                        raise
                    note(f"note: {did}")
                    host_changes.append(did)
                    _, cid = pm.start()
                pm.remove([cid])
            except ToolError as e:
                warn(f"podman left out: {e}")
                unavailable["podman"] = str(e)
                pm.cleanup()
                tools.remove(pm)
        versions = {t.name: t.version() for t in tools}
        if podman_bin and "podman" not in unavailable:
            versions["conmon"] = tool_version(["conmon", "--version"])
            versions["crun"] = tool_version(["crun", "--version"])
        info = {"rootfs": rootfs, "kernel": platform.release(), "cpus": os.cpu_count(),
                "versions": versions, "loadavg_start": loadavg()}
        note(f"rootfs      {rootfs}  (workload: {' '.join(WORKLOAD)})")
        for k, v in versions.items():
            note(f"version     {k}: {v}")
        note(f"kernel      {platform.release()}, {os.cpu_count()} CPUs, "
             f"load average {info['loadavg_start']}")
        note(f"minibox     {' '.join(mb.base())} ...  (private state dir)")
        if len(tools) > 1:
            note(f"podman      {' '.join(tools[1].base())} run -d {' '.join(PODMAN_RUN)} "
                 f"{tools[1].image} ...")

        t_all = time.monotonic()
        if "roundtrip" in phases:
            t0 = time.monotonic()
            note(f"round trip: {args.rounds} interleaved rounds (+{args.warmup} warm-up), "
                 f"seed {args.seed}")
            results["roundtrip"] = phase_roundtrip(tools, args.rounds, args.warmup, rng)
            results["roundtrip_elapsed_s"] = time.monotonic() - t0
            results["roundtrip_loadavg"] = loadavg()
            for t in tools:
                for what in t.leaks(t.started):
                    leaks.append(f"{t.name} (round trip): {what}")
                    warn(f"{t.name} left something behind: {what}")
        if "memory" in phases:
            t0 = time.monotonic()
            note(f"memory: {args.containers} running containers per tool")
            results["memory"] = phase_memory(tools, args.containers, rng, args.settle, leaks)
            results["memory_elapsed_s"] = time.monotonic() - t0
            results["memory_loadavg"] = loadavg()
        if "ps" in phases:
            t0 = time.monotonic()
            with_podman = not args.no_podman_ps and len(tools) > 1
            note(f"ps: {args.ps_containers} running containers per tool"
                 + ("" if with_podman else " (minibox only)")
                 + f", {args.ps_calls} interleaved calls each")
            results["ps"] = phase_ps(tools, args.ps_containers, args.ps_calls, rng,
                                     with_podman, args.settle, leaks)
            results["ps_elapsed_s"] = time.monotonic() - t0
            results["ps_loadavg"] = loadavg()
        info["elapsed_s"] = time.monotonic() - t_all
    except KeyboardInterrupt:
        interrupted = True
        progress_done()
        warn("interrupted; cleaning up")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, on_signal_during_cleanup)
        for t in tools:
            try:
                t.cleanup()
            except Exception as e:  # noqa: BLE001 - keep cleaning the rest
                warn(f"{t.name} cleanup: {e}")
        shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        return 130

    report(args, info, results, unavailable, host_changes, leaks)
    return 1 if leaks else 0


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------

def fmt_stats(s):
    if not s:
        return "     -        -        -        -     -"
    return (f"{s['median_ms']:8.1f} {s['p10_ms']:8.1f} {s['p90_ms']:8.1f} "
            f"{s['min_ms']:8.1f} {s['n']:5d}")


def fmt_cpu(s):
    return f"{s['median_ms']:8.1f}" if s else f"{'-':>8}"


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt_ratio(r, why="n/a"):
    return f"{r:.2f}" if r is not None else why


def report(args, info, results, unavailable, host_changes, leaks):
    lines = []
    header = (f"{'tool':<9} {'step':<12} {'median':>8} {'p10':>8} {'p90':>8} {'min':>8} "
              f"{'n':>5} {'cpu med':>8}")
    rt = results.get("roundtrip")
    if rt is not None:
        print()
        print(f"1. Round trip: `run -d ... sleep 1000` then `rm -f ID`, {args.rounds} "
              f"interleaved rounds ({results['roundtrip_elapsed_s']:.1f} s, load average "
              f"{results['roundtrip_loadavg']}), milliseconds")
        print(header)
        print("-" * len(header))
        for name, v in rt.items():
            if v["status"] != "ok":
                print(f"{name:<9} {v['status']}: {first_line(v['reason'])[:100]}")
                if not v["total"]:
                    continue
            for step, label in (("run", "run -d"), ("rm", "rm -f"), ("total", "round trip")):
                print(f"{name:<9} {label:<12} {fmt_stats(v['stats'][step])} "
                      f"{fmt_cpu(v['stats'][step + '_cpu'])}")
        med = {n: {k: (s["median_ms"] if s else None) for k, s in v["stats"].items()}
               for n, v in rt.items() if v["status"] == "ok"}
        m, p = med.get("minibox", {}), med.get("podman", {})
        why = "n/a (" + ("podman " + unavailable["podman"][:80] if "podman" in unavailable
                         else "a tool failed") + ")"
        lines.append(f"ratio minibox/podman round trip = "
                     f"{fmt_ratio(ratio(m.get('total'), p.get('total')), why)}")
        lines.append(f"ratio minibox/podman run -d = "
                     f"{fmt_ratio(ratio(m.get('run'), p.get('run')), why)}")
        lines.append(f"ratio minibox/podman rm -f = "
                     f"{fmt_ratio(ratio(m.get('rm'), p.get('rm')), why)}")

    mem = results.get("memory")
    if mem is not None:
        print()
        print(f"2. Memory of the process that stays with each detached container, "
              f"{args.containers} running per tool ({results['memory_elapsed_s']:.1f} s), "
              "KiB per container")
        h2 = (f"{'tool':<9} {'process':<16} {'PSS':>8} {'RSS':>8} {'private':>8} "
              f"{'run -d med':>10} {'rm all':>8}")
        print(h2)
        print("-" * len(h2))
        for name, v in mem.items():
            if v.get("status") != "ok":
                print(f"{name:<9} {v.get('status')}: {first_line(v.get('reason'))[:100]}")
                continue
            run_med = v["run_ms"]["median_ms"] if v.get("run_ms") else float("nan")
            print(f"{name:<9} {v['process']:<16} {v['pss_kib']:8.0f} {v['rss_kib']:8.0f} "
                  f"{v['private_kib']:8.0f} {run_med:8.1f}ms {v.get('teardown_s', 0):7.1f}s")
        print("(PSS: shared pages split among the processes sharing them, from "
              "/proc/PID/smaps_rollup; private: pages only that process maps)")
        mm, pm = mem.get("minibox", {}), mem.get("podman", {})
        m_pss = mm.get("pss_kib") if mm.get("status") == "ok" else None
        p_pss = pm.get("pss_kib") if pm.get("status") == "ok" else None
        r = ratio(m_pss, p_pss)
        m_txt = f"{m_pss / 1024:.2f} MiB" if m_pss is not None else "n/a"
        p_txt = f"{p_pss / 1024:.2f} MiB" if p_pss is not None else "n/a"
        lines.append(f"monitor PSS minibox = {m_txt} per container, conmon = {p_txt}"
                     + (f" (ratio {r:.2f})" if r is not None else ""))

    ps = results.get("ps")
    if ps is not None:
        print()
        print(f"3. `ps` with {args.ps_containers} running containers per tool, "
              f"{args.ps_calls} interleaved calls ({results['ps_elapsed_s']:.1f} s, load "
              f"average {results['ps_loadavg']}), milliseconds")
        h3 = (f"{'tool':<9} {'listed':>6} {'median':>8} {'p10':>8} {'p90':>8} {'min':>8} "
              f"{'n':>5} {'cpu med':>8}")
        print(h3)
        print("-" * len(h3))
        for name, v in ps.items():
            if v.get("status") != "ok" or not v.get("stats"):
                print(f"{name:<9} {v.get('status')}: {first_line(v.get('reason'))[:100]}")
                continue
            print(f"{name:<9} {v.get('listed', 0):6d} {fmt_stats(v['stats'])} "
                  f"{fmt_cpu(v.get('cpu_stats'))}")
        if "podman" not in ps:
            print("podman    skipped (--no-podman-ps, --no-podman or podman unavailable)")
        for name, v in ps.items():
            a, b = v.get("fill_first20_ms"), v.get("fill_last20_ms")
            if a and b:
                pss = (f"; monitor PSS at {args.ps_containers}: "
                       f"{v['memory']['pss_kib']:.0f} KiB per container"
                       if v.get("memory") else "")
                print(f"({name} run -d while filling: first 20 median {a['median_ms']:.1f} ms, "
                      f"last 20 median {b['median_ms']:.1f} ms{pss})")
        mps = ps.get("minibox", {}).get("stats")
        pps = ps.get("podman", {}).get("stats")
        if mps:
            verdict = "met" if mps["median_ms"] < 100 else "NOT met"
            lines.append(f"minibox ps ({args.ps_containers} running) median = "
                         f"{mps['median_ms']:.0f} ms (target < 100 ms: {verdict})")
        else:
            lines.append(f"minibox ps ({args.ps_containers} running) median = n/a")
        if pps:
            lines.append(f"podman ps ({args.ps_containers} running) median = "
                         f"{pps['median_ms']:.0f} ms")
            lines.append(f"ratio minibox/podman ps = "
                         f"{fmt_ratio(ratio(mps and mps['median_ms'], pps['median_ms']))}")
        else:
            lines.append("podman ps: skipped")

    if host_changes:
        print("host changes: " + "; ".join(host_changes))
    print()
    if leaks:
        print("LEFT BEHIND after rm -f (a bug in that tool):")
        for x in leaks:
            print(f"  {x}")
    else:
        print("cleanup check: nothing left behind (state, processes, cgroups, mounts)")
    for line in lines:
        print(line)

    if args.json:
        out = {"args": vars(args), **info, "host_changes": host_changes,
               "unavailable": unavailable, "leaks": leaks, "results": results,
               "summary": lines}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print(f"(numbers written to {args.json})")


if __name__ == "__main__":
    sys.exit(main())
