#!/usr/bin/env python3
"""Image benchmark, side by side in one run: minibox vs podman.

1. import: the same rootfs tarball into each store (`minibox import FILE` vs
   `podman import FILE`).
2. commit: a container (from that image) that wrote WRITE_MB of fresh files becomes an
   image (`minibox commit` vs `podman commit`).
3. run: `minibox run IMAGE /bin/true` (overlayfs of the layers, upper/work made per
   container) against `minibox run ROOTFS /bin/true` (the plain directory): what the
   overlay costs at start.

The runs of each pair alternate round by round, so drift on the machine hits both.
The rootfs is "realistic" by default: the busybox rootfs plus copies of the host's
Python and Perl libraries and zoneinfo (about 100 MB, thousands of files, like a
Debian minbase); `--rootfs DIR` takes another one (e.g. made by `debootstrap
--variant=minbase bookworm DIR`). Everything goes into private stores (a temporary
--data-root for minibox, a temporary podman --root/--runroot), removed at the end.

    sudo python3 bench/images.py [--rounds 5] [--run-rounds 40] [--rootfs DIR]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINIBOX = os.path.join(REPO, ".venv", "bin", "minibox")
PODMAN_RUN = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768",
              "--network=none"]
EXTRA = ["/usr/lib/python3.11", "/usr/share/perl", "/usr/lib/x86_64-linux-gnu/perl",
         "/usr/share/zoneinfo"]
WRITE_MB = 100


def note(msg):
    print(msg, flush=True)


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{r.stderr.strip()}")
    return r.stdout


def timed(argv, sync=False, **kw):
    if sync:
        # Flush the previous step's dirty pages first (untimed): otherwise whichever tool
        # runs next pays for the writeback of the other's files.
        os.sync()
    t = time.perf_counter()
    out = run(argv, **kw)
    return time.perf_counter() - t, out


class Minibox:
    def __init__(self, scratch):
        self.data = os.path.join(scratch, "minibox-data")
        self.state = os.path.join(scratch, "minibox-state")

    def cmd(self, *args):
        return [MINIBOX, "--root", self.state, "--data-root", self.data, *args]


class Podman:
    def __init__(self, scratch):
        self.root = os.path.join(scratch, "podman-root")
        self.runroot = os.path.join(scratch, "podman-runroot")

    def cmd(self, *args):
        return ["podman", "--root", self.root, "--runroot", self.runroot,
                "--cgroup-manager=cgroupfs", "--events-backend=file",
                "--storage-driver=overlay", *args]


def make_rootfs(dest):
    run(["cp", "-a", os.path.join(REPO, "rootfs"), dest])
    for src in EXTRA:
        if os.path.isdir(src):
            target = os.path.join(dest, src.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            run(["cp", "-a", src, target])


def du(path):
    return int(run(["du", "-sb", path]).split()[0]), int(run(
        ["sh", "-c", f"find {path} | wc -l"]).strip())


def ratio(a, b):
    return f"{a / b:.2f}" if b else "n/a"


def row(what, mb, pd):
    note(f"{what:<34} {mb * 1000:10.1f} {pd * 1000:10.1f} {ratio(mb, pd):>8}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds of import and commit")
    p.add_argument("--run-rounds", type=int, default=30, help="rounds of run")
    p.add_argument("--rootfs", help="the rootfs to use (default: a realistic one made here)")
    p.add_argument("--no-podman", action="store_true", help="only the run comparison")
    o = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/images.py needs root")
    # Byte-compile first: with PYTHONDONTWRITEBYTECODE set, a changed module would be
    # compiled again on every start and the run timings would measure the compiler.
    run([os.path.join(REPO, ".venv", "bin", "python"), "-m", "compileall", "-q",
         os.path.join(REPO, "minibox")])
    scratch = tempfile.mkdtemp(prefix="minibox-bench-images.")
    mb, pd = Minibox(scratch), Podman(scratch)
    podman = not o.no_podman and shutil.which("podman")
    try:
        rootfs = o.rootfs or os.path.join(scratch, "rootfs")
        if not o.rootfs:
            make_rootfs(rootfs)
        size, files = du(rootfs)
        tarball = os.path.join(scratch, "rootfs.tar")
        run(["tar", "-C", rootfs, "-cf", tarball, "."])
        note(f"rootfs: {size / 1e6:.0f} MB, {files} files; load average "
             f"{os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs")
        note(f"{'':<34} {'minibox ms':>10} {'podman ms':>10} {'ratio':>8}")

        # 1. import
        mi, pi = [], []
        for k in range(o.rounds):
            steps = [(mi, mb.cmd("import", tarball, f"bench:{k}"))]
            if podman:
                steps.append((pi, pd.cmd("import", tarball, f"localhost/bench:{k}")))
            for times, argv in (steps if k % 2 == 0 else steps[::-1]):
                t, _ = timed(argv, sync=True)
                times.append(t)
            if k < o.rounds - 1:
                # Both stores skip a layer they hold already: remove the image (untimed)
                # so that every round imports into a store without it.
                run(mb.cmd("rmi", f"bench:{k}"))
                if podman:
                    run(pd.cmd("rmi", f"localhost/bench:{k}"))
        row("import (tar)", statistics.median(mi), statistics.median(pi) if pi else 0)

        # 2. commit of a container that wrote WRITE_MB in fresh files
        write = (f"mkdir -p /bench-data && i=0; while [ $i -lt {WRITE_MB} ]; do "
                 f"dd if=/dev/urandom of=/bench-data/f$i bs=1M count=1 2>/dev/null || exit 1; "
                 f"i=$((i+1)); done")
        mc, pc = [], []
        for k in range(o.rounds):
            name = f"bench-c{k}"
            run(mb.cmd("create", "--name", name, f"bench:{o.rounds - 1}", "sh", "-c", write))
            run(mb.cmd("start", name))
            code = run(mb.cmd("wait", name)).strip()
            if code != "0":
                raise SystemExit(f"the writing container exited {code}: "
                                 f"{run(mb.cmd('logs', name)).strip()}")
            t, _ = timed(mb.cmd("commit", name, f"bench-commit:{k}"), sync=True)
            mc.append(t)
            run(mb.cmd("rm", name))
            if podman:
                run(pd.cmd("run", *PODMAN_RUN, "--name", name, f"localhost/bench:{o.rounds - 1}",
                           "sh", "-c", write))
                t, _ = timed(pd.cmd("commit", name, f"localhost/bench-commit:{k}"), sync=True)
                pc.append(t)
                run(pd.cmd("rm", name))
        row(f"commit ({WRITE_MB} MB written)", statistics.median(mc),
            statistics.median(pc) if pc else 0)

        # 3. run IMAGE vs run ROOTFS
        ri, rr = [], []
        for _ in range(o.run_rounds):
            t, _ = timed(mb.cmd("run", f"bench:{o.rounds - 1}", "/bin/true"))
            ri.append(t)
            t, _ = timed(mb.cmd("run", rootfs, "/bin/true"))
            rr.append(t)
        a, b = statistics.median(ri), statistics.median(rr)
        note(f"{'':<34} {'image ms':>10} {'rootfs ms':>10} {'ratio':>8}")
        row("run /bin/true (median)", a, b)
        note(f"overlay cost at start: {(a - b) * 1000:+.1f} ms "
             f"(min {min(ri) * 1000:.1f} vs {min(rr) * 1000:.1f} ms)")
    finally:
        if podman:
            subprocess.run(pd.cmd("rm", "-a", "-f"), capture_output=True)
            subprocess.run(pd.cmd("rmi", "-a", "-f"), capture_output=True)
            subprocess.run(pd.cmd("system", "reset", "-f"), capture_output=True)
            subprocess.run(["umount", "-R", os.path.join(pd.root, "overlay")],
                           capture_output=True)
        subprocess.run(mb.cmd("prune"), capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
