#!/usr/bin/env python3
"""Side-by-side container start-time benchmark: minibox vs runc vs crun.

Every tool starts a container that runs /bin/true on the same busybox rootfs.
The runs are interleaved round-robin (one run of each tool per round) so slow
drift on the machine -- page cache, CPU frequency, a neighbour's load -- hits
every tool equally instead of whichever one happened to be measured last.
The order inside each round is shuffled (seeded, so reproducible): with a
fixed or merely rotated order each tool would always run right after the same
neighbour and inherit its after-effects (dirty caches, cgroup teardown work).

Needs root (runc, crun and minibox all create namespaces and cgroups).
Stdlib only, so it runs with any Python 3 without touching the project venv.

    sudo python3 bench/start.py                  # 60 rounds, default case
    sudo python3 bench/start.py --with-limits    # plus memory/pids/cpu limits
    sudo python3 bench/start.py --json out.json
"""

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The limits the --with-limits case applies, in both spellings.
LIMIT_MEMORY = 256 * 1024 * 1024
LIMIT_PIDS = 100
LIMIT_CPU_QUOTA = 50000
LIMIT_CPU_PERIOD = 100000
MINIBOX_LIMIT_FLAGS = ["--memory", "256m", "--pids-limit", "100", "--cpus", "0.5"]

CASES = ("default", "limits")


def warn(msg):
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


def note(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------
# OCI bundle for the peers
# --------------------------------------------------------------------------

def oci_config(rootfs, limits):
    """The config `runc spec` would write (runc 1.1), with /bin/true and no tty.

    Written out here rather than produced by `runc spec` so that runc and crun
    get byte-identical configs and the benchmark still works when only one of
    them is installed.  The mounts, masked paths and capabilities are kept
    because they are what a user of either runtime gets by default, i.e. the
    realistic work a "start a container" costs.
    """
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    resources = {"devices": [{"allow": False, "access": "rwm"}]}
    if limits:
        resources["memory"] = {"limit": LIMIT_MEMORY}
        resources["pids"] = {"limit": LIMIT_PIDS}
        resources["cpu"] = {"quota": LIMIT_CPU_QUOTA, "period": LIMIT_CPU_PERIOD}
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/true"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "cwd": "/",
            "capabilities": {k: list(caps) for k in
                             ("bounding", "effective", "permitted", "ambient")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        # Absolute and symlink-free: runc refuses a rootfs path that goes
        # through a symlink.
        "root": {"path": rootfs, "readonly": True},
        "hostname": "bench",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666",
                         "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]},
        ],
        "linux": {
            "resources": resources,
            # pid, ipc, uts, mount, network; deliberately no user namespace.
            "namespaces": [{"type": t} for t in
                           ("pid", "network", "ipc", "uts", "mount")],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore",
                            "/proc/keys", "/proc/latency_stats",
                            "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"],
        },
    }


def copy_rootfs(src, dst):
    # cp -a keeps symlinks (the busybox applet links), ownership and any
    # device nodes as they are; a naive Python copy would read /dev/zero.
    # Each peer gets its own copy because runc/crun create mount-point
    # directories inside the rootfs and must not scribble on the project's.
    subprocess.run(["cp", "-a", "--", src, dst], check=True)


# --------------------------------------------------------------------------
# crun on a hybrid cgroup host
# --------------------------------------------------------------------------

def v1_mounted_controllers():
    found = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            _, _, right = line.partition(" - ")
            fields = right.split()
            if len(fields) >= 3 and fields[0] == "cgroup":
                found.update(fields[2].split(","))
    return found


def fix_hybrid_cgroups_for_crun():
    """Make crun usable on a hybrid host; return a description of what was done.

    crun (1.8) refuses to run on a hybrid host while any controller is bound
    to the unified hierarchy; on this kind of machine hugetlb is the only one
    there.  Binding it to its own v1 hierarchy, as a distribution's init would,
    empties the unified controller list.  A v1 hierarchy stays bound after
    umount, so there is nothing meaningful to undo afterwards; we leave it.
    """
    unified = "/sys/fs/cgroup/unified/cgroup.controllers"
    try:
        with open(unified) as f:
            on_unified = f.read().split()
    except FileNotFoundError:
        return None  # pure v1 or pure v2 host: crun is fine as is
    if not on_unified:
        return None
    done = []
    mounted = v1_mounted_controllers()
    for ctrl in on_unified:
        if ctrl != "hugetlb" or ctrl in mounted:
            continue
        target = "/sys/fs/cgroup/hugetlb"
        os.makedirs(target, exist_ok=True)
        r = subprocess.run(["mount", "-t", "cgroup", "-o", "hugetlb", "hugetlb", target],
                           stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"mount hugetlb as v1 failed: {r.stderr.strip()}")
        done.append(f"mounted the hugetlb controller as cgroup v1 on {target} "
                    "(it was on the unified hierarchy, which crun rejects)")
    with open(unified) as f:
        left = f.read().split()
    if left:
        raise RuntimeError(f"controllers still on the unified hierarchy: {left}; "
                           "crun will refuse to run")
    return "; ".join(done) or None


# --------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------

class Entry:
    """One (tool, case) column of the benchmark."""

    def __init__(self, tool, case, argv_fn, cleanup_fn=None):
        self.tool = tool
        self.case = case
        self.argv_fn = argv_fn      # run index -> argv
        self.cleanup_fn = cleanup_fn  # run index -> None, after a failed run
        self.samples = []
        self.status = "ok"
        self.reason = ""
        self.n = 0

    @property
    def label(self):
        return self.tool if self.case == "default" else f"{self.tool} [{self.case}]"


class Peer:
    """runc or crun with a private state dir and one bundle per case."""

    def __init__(self, name, binary, workdir, rootfs_src, cases):
        self.name = name
        self.binary = binary
        self.dir = os.path.join(workdir, name)
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state)
        rootfs = os.path.join(self.dir, "rootfs")
        copy_rootfs(rootfs_src, rootfs)
        self.bundles = {}
        for case in cases:
            b = os.path.join(self.dir, f"bundle-{case}")
            os.mkdir(b)
            with open(os.path.join(b, "config.json"), "w") as f:
                json.dump(oci_config(rootfs, case == "limits"), f, indent=1)
            self.bundles[case] = b
        # Container ids are unique per run (pid + tool + case + counter) so a
        # leftover from a failed run can never collide with the next one.
        self.prefix = f"mbxbench-{os.getpid()}-{name}"

    def cid(self, case, i):
        return f"{self.prefix}-{case}-{i}"

    def entry(self, case):
        def argv(i):
            return [self.binary, "--root", self.state, "run",
                    "--bundle", self.bundles[case], self.cid(case, i)]

        def cleanup(i):
            self.delete(self.cid(case, i))
        return Entry(self.name, case, argv, cleanup)

    def delete(self, cid):
        subprocess.run([self.binary, "--root", self.state, "delete", "-f", cid],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def cleanup(self):
        """Delete any container still known to this peer's private state."""
        if not os.path.isdir(self.state):
            return
        r = subprocess.run([self.binary, "--root", self.state, "list", "-q"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        ids = set(r.stdout.split())
        # `list` skips entries whose state it cannot parse; the directory
        # names are the ids, so sweep those too.
        ids.update(n for n in os.listdir(self.state) if n.startswith(self.prefix))
        for cid in sorted(ids):
            self.delete(cid)


def read_shebang_interpreter(script):
    try:
        with open(script, "rb") as f:
            first = f.readline(512)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    parts = first[2:].decode(errors="replace").split()
    if not parts:
        return None
    if os.path.basename(parts[0]) == "env" and len(parts) > 1:
        return shutil.which(parts[1])
    return parts[0]


def find_floor_python(args):
    """The interpreter minibox runs under, for the `python -S -c pass` floor.

    Prefer what minibox's own shebang names, then the venv next to it.  The
    fallback is this script's interpreter resolved to the real binary --
    never a pyenv shim, which adds ~50 ms of shell to every start.
    """
    if args.python:
        return args.python, "from --python"
    if os.path.exists(args.minibox):
        interp = read_shebang_interpreter(args.minibox)
        # Only a Python shebang counts: a shell wrapper's /bin/sh is no floor.
        if interp and os.path.basename(interp).startswith("python") \
                and os.access(interp, os.X_OK):
            return interp, "minibox's interpreter"
    venv_py = os.path.join(os.path.dirname(args.minibox), "python")
    if os.access(venv_py, os.X_OK):
        return venv_py, "venv interpreter"
    return os.path.realpath(sys.executable), "fallback: this script's interpreter (no minibox venv)"


# --------------------------------------------------------------------------
# Running and timing
# --------------------------------------------------------------------------

class Runner:
    def __init__(self, workdir):
        self.errpath = os.path.join(workdir, "stderr.log")
        self.devnull = os.open(os.devnull, os.O_RDWR)

    def run(self, argv):
        """Run argv once; return (seconds, returncode, stderr text).

        posix_spawn with stdio on /dev/null and a file keeps the harness's own
        overhead small and identical for every tool (no pipes to drain, no
        Popen bookkeeping inside the timed region).
        """
        errfd = os.open(self.errpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            actions = [
                (os.POSIX_SPAWN_DUP2, self.devnull, 0),
                (os.POSIX_SPAWN_DUP2, self.devnull, 1),
                (os.POSIX_SPAWN_DUP2, errfd, 2),
            ]
            t0 = time.perf_counter()
            pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
            try:
                _, status = os.waitpid(pid, 0)
            except BaseException:
                # Interrupted (Ctrl-C/SIGTERM): the run ends within
                # milliseconds, so reap it before cleanup deletes its
                # bundle and state from under it.
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
                raise
            dt = time.perf_counter() - t0
        finally:
            os.close(errfd)
        rc = os.waitstatus_to_exitcode(status)
        err = ""
        if rc != 0:
            with open(self.errpath, errors="replace") as f:
                err = f.read().strip()
        return dt, rc, err


def run_once(runner, entry, record):
    argv = entry.argv_fn(entry.n)
    dt, rc, err = runner.run(argv)
    i = entry.n
    entry.n += 1
    if rc != 0:
        if entry.cleanup_fn:
            entry.cleanup_fn(i)
        return False, f"exit {rc}: {err[-600:] or '(no stderr)'}"
    if record:
        entry.samples.append(dt * 1000.0)
    return True, ""


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


def tool_version(argv):
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=20)
        return r.stdout.strip().splitlines()[0] if r.stdout.strip() else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Interleaved start-time benchmark of `minibox run` vs runc and crun.")
    p.add_argument("--rounds", type=int, default=60,
                   help="measured rounds; each round runs every tool once (default 60, "
                        "use at least 50)")
    p.add_argument("--warmup", type=int, default=3,
                   help="unmeasured runs per tool before the rounds (default 3); the "
                        "first one also checks that the tool works at all")
    p.add_argument("--seed", type=int, default=1,
                   help="seed for the per-round shuffle of the run order (default 1)")
    p.add_argument("--rootfs", default=os.path.join(REPO, "rootfs"),
                   help="busybox rootfs with /bin/true (default: rootfs/ in the repo)")
    p.add_argument("--minibox", default=os.path.join(REPO, ".venv", "bin", "minibox"),
                   help="minibox executable (default: .venv/bin/minibox in the repo)")
    p.add_argument("--python", default=None,
                   help="interpreter for the `python -S -c pass` floor "
                        "(default: the one minibox runs under)")
    p.add_argument("--runc", default="runc", help="runc binary (default: runc on PATH)")
    p.add_argument("--crun", default="crun", help="crun binary (default: crun on PATH)")
    p.add_argument("--no-runc", action="store_true", help="leave runc out")
    p.add_argument("--no-crun", action="store_true", help="leave crun out")
    p.add_argument("--with-limits", action="store_true",
                   help="add a case with memory 256 MiB, pids 100, cpu 50000/100000")
    p.add_argument("--json", metavar="FILE", help="also write all numbers to FILE")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    if args.warmup < 1:
        p.error("--warmup must be at least 1 (the first run is the availability check)")
    return args


def on_sigterm(signum, frame):
    # Turn SIGTERM into an exception so the finally-blocks clean up bundles,
    # state dirs and containers exactly as on Ctrl-C.
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench/start.py must run as root (the runtimes need it): "
                 "sudo python3 bench/start.py")
    signal.signal(signal.SIGTERM, on_sigterm)

    rootfs = os.path.realpath(args.rootfs)
    if not os.path.exists(os.path.join(rootfs, "bin", "true")) and \
            not os.path.islink(os.path.join(rootfs, "bin", "true")):
        sys.exit(f"{args.rootfs}: no bin/true in this rootfs; build it with the "
                 "project's setup (.ci/setup) or pass --rootfs")
    if args.rounds < 50:
        warn(f"--rounds {args.rounds} is below 50; the percentiles will be noisy")

    cases = ["default"] + (["limits"] if args.with_limits else [])
    unavailable = {}   # tool -> reason (whole tool missing)
    host_changes = []

    minibox = os.path.abspath(args.minibox)
    if not os.access(minibox, os.X_OK):
        unavailable["minibox"] = f"not found at {minibox}"
        warn(f"minibox not found at {minibox}: benchmarking the peers only "
             "(build it with `pip install -e .` in .venv, or pass --minibox)")

    peer_bins = {}
    for name, flag, skip in (("runc", args.runc, args.no_runc),
                             ("crun", args.crun, args.no_crun)):
        if skip:
            unavailable[name] = f"left out with --no-{name}"
            continue
        path = shutil.which(flag)
        if not path:
            unavailable[name] = f"{flag} not found"
            warn(f"{name} not found ({flag}); apt-get install -y {name}")
            continue
        peer_bins[name] = path

    if "crun" in peer_bins:
        try:
            did = fix_hybrid_cgroups_for_crun()
        except (OSError, RuntimeError) as e:
            did = None
            warn(f"crun left out: {e}")
            unavailable["crun"] = str(e)
            del peer_bins["crun"]
        if did:
            note(f"note: {did}")
            host_changes.append(did)

    py, py_how = find_floor_python(args)

    workdir = os.path.realpath(tempfile.mkdtemp(prefix="minibox-bench-"))
    peers = []
    results = {}
    try:
        runner = Runner(workdir)
        entries = []
        # Floor: the cheapest possible start of the interpreter minibox uses.
        entries.append(Entry("python -S", "default", lambda i: [py, "-S", "-c", "pass"]))
        if "minibox" not in unavailable:
            for case in cases:
                extra = MINIBOX_LIMIT_FLAGS if case == "limits" else []
                entries.append(Entry("minibox", case,
                                     lambda i, extra=extra: [minibox, "run", *extra,
                                                             rootfs, "/bin/true"]))
        for name, path in peer_bins.items():
            peer = Peer(name, path, workdir, rootfs, cases)
            peers.append(peer)
            for case in cases:
                entries.append(peer.entry(case))

        versions = {"python -S": tool_version([py, "--version"])}
        for name, path in peer_bins.items():
            versions[name] = tool_version([path, "--version"])
        if "minibox" not in unavailable:
            versions["minibox"] = tool_version([minibox, "--version"])

        note(f"rootfs      {rootfs}")
        note(f"floor       {py} -S -c pass  ({py_how})")
        for k, v in versions.items():
            note(f"version     {k}: {v}")
        note(f"kernel      {platform.release()}, {os.cpu_count()} CPUs")
        note(f"rounds      {args.rounds} (+{args.warmup} warm-up), "
             f"{len(entries)} columns, interleaved, order shuffled per round "
             f"(seed {args.seed})")

        # Warm-up, which also decides availability: a tool (or a case) whose
        # first run fails is reported as unavailable, not as a crash.
        for e in entries:
            for _ in range(args.warmup):
                ok, why = run_once(runner, e, record=False)
                if not ok:
                    e.status = "unavailable"
                    e.reason = why
                    if e.tool == "minibox" and e.case == "limits":
                        warn("minibox rejected the limit flags "
                             f"({' '.join(MINIBOX_LIMIT_FLAGS)}); limits case "
                             f"unavailable: {why}")
                    else:
                        warn(f"{e.label} failed during warm-up, left out: {why}")
                    break
        live = [e for e in entries if e.status == "ok"]

        rng = random.Random(args.seed)
        t_start = time.monotonic()
        for r in range(args.rounds):
            order = list(live)
            rng.shuffle(order)
            for e in order:
                if e.status != "ok":
                    continue
                ok, why = run_once(runner, e, record=True)
                if not ok:
                    # A tool that worked in warm-up and then fails is a real
                    # problem; stop timing it, but keep the others going.
                    e.status = "failed"
                    e.reason = f"round {r + 1}: {why}"
                    warn(f"{e.label} failed in round {r + 1}: {why}")
            if sys.stdout.isatty():
                print(f"\rround {r + 1}/{args.rounds}", end="", flush=True)
        if sys.stdout.isatty():
            print("\r" + " " * 30 + "\r", end="")
        elapsed = time.monotonic() - t_start

        for e in entries:
            results[(e.tool, e.case)] = {
                "status": e.status, "reason": e.reason,
                "stats": summarize(e.samples), "samples_ms": e.samples,
            }
    except KeyboardInterrupt:
        warn("interrupted; cleaning up")
        return 130
    finally:
        for peer in peers:
            peer.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    report(args, cases, results, unavailable, versions, host_changes, py, py_how, elapsed)
    return 0


def report(args, cases, results, unavailable, versions, host_changes, py, py_how, elapsed):
    tools = ["python -S", "minibox", "runc", "crun"]
    print()
    print(f"Start time of a container running /bin/true, {args.rounds} interleaved "
          f"rounds ({elapsed:.1f} s), milliseconds")
    header = f"{'case':<8} {'tool':<10} {'median':>8} {'p10':>8} {'p90':>8} {'min':>8} {'n':>4}"
    print(header)
    print("-" * len(header))
    for case in cases:
        for tool in tools:
            if tool == "python -S" and case != "default":
                continue
            r = results.get((tool, case))
            if r is None:
                why = unavailable.get(tool)
                if why and case == cases[0]:
                    print(f"{case:<8} {tool:<10} unavailable: {why}")
                continue
            s = r["stats"]
            if r["status"] != "ok" or s is None:
                print(f"{case:<8} {tool:<10} {r['status']}: {first_line(r['reason'])}")
                continue
            print(f"{case:<8} {tool:<10} {s['median_ms']:8.2f} {s['p10_ms']:8.2f} "
                  f"{s['p90_ms']:8.2f} {s['min_ms']:8.2f} {s['n']:4d}")
    print(f"(python -S = `{py} -S -c pass`, {py_how}: the floor any runtime "
          "written in Python pays before doing any work)")

    def med(tool, case):
        r = results.get((tool, case))
        if r and r["status"] == "ok" and r["stats"]:
            return r["stats"]["median_ms"]
        return None

    ratios = {}
    lines = []
    for case in cases:
        suffix = "" if case == "default" else f" [{case}]"
        c_runc, c_crun = med("runc", case), med("crun", case)
        if c_runc and c_crun:
            ratios[f"crun/runc{suffix}"] = c_crun / c_runc
        for peer in ("runc", "crun"):
            key = f"minibox/{peer}{suffix}"
            m, p = med("minibox", case), med(peer, case)
            if m is not None and p is not None:
                ratios[key] = m / p
                lines.append(f"ratio {key} = {m / p:.2f}")
            else:
                missing = "minibox" if m is None else peer
                ratios[key] = None
                lines.append(f"ratio {key} = n/a ({missing} "
                             f"{reason_for(results, unavailable, missing, case)})")
    if "limits" in cases:
        # What the limits cost each tool: its own limits/default ratio, from the medians
        # and as the median of the per-round ratios (each round runs both cases, so the
        # pairing cancels much of the machine's drift over the run).
        for tool in ("minibox", "runc", "crun"):
            d, lim = results.get((tool, "default")), results.get((tool, "limits"))
            if not (d and lim and d["status"] == lim["status"] == "ok" and
                    len(d["samples_ms"]) == len(lim["samples_ms"])):
                continue
            pairs = zip(d["samples_ms"], lim["samples_ms"], strict=True)
            paired = statistics.median(b / a for a, b in pairs)
            whole = med(tool, "limits") / med(tool, "default")
            lines.append(f"limits/default {tool:<7} = {whole:.3f} (medians), {paired:.3f} "
                         "(median of per-round ratios)")
            ratios[f"{tool} limits/default"] = whole
            ratios[f"{tool} limits/default paired"] = paired
    for k, v in ratios.items():
        if k.startswith("crun/") and v is not None:
            print(f"(peer check: crun/runc{k[9:]} = {v:.2f})")
    if host_changes:
        print("host changes: " + "; ".join(host_changes))
    print()
    for line in lines:
        print(line)

    if args.json:
        out = {
            "rounds": args.rounds,
            "warmup": args.warmup,
            "seed": args.seed,
            "rootfs": os.path.realpath(args.rootfs),
            "floor_python": py,
            "floor_python_source": py_how,
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "versions": versions,
            "host_changes": host_changes,
            "elapsed_s": elapsed,
            "limits": {"memory_bytes": LIMIT_MEMORY, "pids": LIMIT_PIDS,
                       "cpu_quota": LIMIT_CPU_QUOTA, "cpu_period": LIMIT_CPU_PERIOD},
            "results": {
                case: {
                    tool: (results[(tool, case)] if (tool, case) in results
                           else {"status": "unavailable",
                                 "reason": unavailable.get(tool, "not run")})
                    for tool in tools if not (tool == "python -S" and case != "default")
                }
                for case in cases
            },
            "ratios": ratios,
        }
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")
        print(f"(numbers written to {args.json})")


def first_line(s):
    s = s.strip()
    return s.splitlines()[0] if s else ""


def reason_for(results, unavailable, tool, case):
    r = results.get((tool, case))
    if r is not None:
        return f"{r['status']}: {first_line(r['reason'])[:120]}"
    return "unavailable: " + unavailable.get(tool, "not run")


if __name__ == "__main__":
    sys.exit(main())
