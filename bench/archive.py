#!/usr/bin/env python3
"""Image archive benchmark: `minibox save`/`load` vs `podman save`/`load`, side by side.

The image: a synthetic root filesystem of about --size-mb megabytes (default 200) with
many files, copied from this machine's own /usr (binaries, libraries, Python modules,
documentation: real file sizes and real compressibility) plus the busybox rootfs, made
into a one-layer image by `minibox import` and `podman import` of the same tar. (A
debootstrap tree would need a Debian mirror; this machine reaches none on loopback.)

Four measurements, each round running every tool once, in an order shuffled per round
(seeded, reproducible), median of --rounds:

  save docker-archive   `save -o FILE IMAGE`
  save oci-archive      `save --format oci-archive -o FILE IMAGE`
  load docker-archive   `load -i FILE` of podman's docker-archive, into an empty store
  load oci-archive      `load -i FILE` of podman's oci-archive, into an empty store

Both tools load the same file. Before each load the image is removed again (minibox:
a fresh data root; podman: `rmi` of the image), so every load copies and unpacks the
layer. podman runs with private --root/--runroot storage (its default driver) under a
temporary directory that is removed at the end, with whatever it mounted there.

Needs root. Stdlib only.

    sudo python3 bench/archive.py                  # 200 MB, 5 rounds
    sudo python3 bench/archive.py --size-mb 50 --rounds 3 --json /tmp/archive.json
"""

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINIBOX = os.path.join(REPO, ".venv", "bin", "minibox")
PODMAN_GLOBAL = ["--cgroup-manager=cgroupfs", "--events-backend=file"]
SOURCES = ["/usr/lib/python3", "/usr/lib/python3.11", "/usr/share/doc", "/usr/bin",
           "/usr/lib/x86_64-linux-gnu", "/usr/share/perl", "/usr/share/man",
           "/usr/share/locale", "/usr/lib/gcc", "/usr/libexec", "/usr/share"]


def note(msg):
    print(msg, flush=True)


def make_tree(dest, limit):
    """busybox rootfs + files from the host's /usr in a fixed order, up to `limit` bytes."""
    subprocess.run(["cp", "-a", os.path.join(REPO, "rootfs"), dest], check=True)
    total, files = 0, 0
    for src in SOURCES:
        if not os.path.isdir(src) or total >= limit:
            continue
        for top, dirs, names in os.walk(src):
            dirs.sort()
            rel = os.path.relpath(top, "/")
            os.makedirs(os.path.join(dest, rel), exist_ok=True)
            for name in sorted(names):
                path = os.path.join(top, name)
                out = os.path.join(dest, rel, name)
                if os.path.lexists(out):
                    continue
                try:
                    if os.path.islink(path):
                        os.symlink(os.readlink(path), out)
                    elif os.path.isfile(path):
                        shutil.copy2(path, out)
                        total += os.path.getsize(out)
                    else:
                        continue
                except OSError:
                    continue
                files += 1
                if total >= limit:
                    return total, files
    return total, files


def timed(argv, env=None):
    start = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, env=env)
    elapsed = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(argv)}\n{r.stderr}")
    return elapsed


def run(argv, env=None):
    return subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, env=env).stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--rootfs", help="a root filesystem to use instead of the tree made from "
                    "/usr (e.g. /var/tmp/minibox-bench/minbase, made by bench/registry.py "
                    "with debootstrap --variant=minbase)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/archive.py needs root")
    base = tempfile.mkdtemp(prefix="minibox-bench-archive.", dir="/var/tmp")
    podman = ["podman", "--root", f"{base}/podman-root", "--runroot", f"{base}/podman-run",
              *PODMAN_GLOBAL]
    penv = {**os.environ, "TMPDIR": f"{base}/tmp"}
    os.makedirs(f"{base}/tmp")
    try:
        return bench(args, base, podman, penv)
    finally:
        subprocess.run([*podman, "rmi", "-a", "-f"], capture_output=True, env=penv)
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f if line.split()[1].startswith(base)]
        for point in reversed(points):
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(base, ignore_errors=True)


def bench(args, base, podman, penv):
    tar = f"{base}/tree.tar"
    if args.rootfs:
        note(f"image: {args.rootfs}")
        subprocess.run(["tar", "--numeric-owner", "-C", args.rootfs, "-cf", tar, "."],
                       check=True)
        note(f"tar {os.path.getsize(tar) / 1e6:.0f} MB")
    else:
        note(f"making a ~{args.size_mb} MB tree from this machine's /usr ...")
        size, files = make_tree(f"{base}/tree", args.size_mb * 1000 * 1000)
        subprocess.run(["tar", "--numeric-owner", "-C", f"{base}/tree", "-cf", tar, "."],
                       check=True)
        shutil.rmtree(f"{base}/tree")
        note(f"tree: {files} files, {size / 1e6:.0f} MB of file data, "
             f"tar {os.path.getsize(tar) / 1e6:.0f} MB")

    store = f"{base}/minibox"
    menv = {**os.environ, "MINIBOX_DATA_ROOT": store}
    run([MINIBOX, "import", tar, "bench/archive:1"], env=menv)
    run([*podman, "import", "-q", tar, "bench/archive:1"], env=penv)
    pname = "localhost/bench/archive:1"
    os.unlink(tar)

    podman_docker, podman_oci = f"{base}/podman-d.tar", f"{base}/podman-o.tar"
    run([*podman, "save", "-o", podman_docker, pname], env=penv)
    run([*podman, "save", "--format", "oci-archive", "-o", podman_oci, pname], env=penv)

    def m_save(fmt):
        out = f"{base}/m-save.tar"
        t = timed([MINIBOX, "save", "--format", fmt, "-o", out, "bench/archive:1"], env=menv)
        os.unlink(out)
        return t

    def p_save(fmt):
        out = f"{base}/p-save.tar"
        t = timed([*podman, "save", "--format", fmt, "-o", out, pname], env=penv)
        os.unlink(out)
        return t

    def m_load(archive):
        root = f"{base}/minibox-load"
        t = timed([MINIBOX, "load", "-q", "-i", archive],
                  env={**os.environ, "MINIBOX_DATA_ROOT": root})
        shutil.rmtree(root)
        return t

    def p_load(archive):
        # The image is there from the import: remove it, so the load really loads.
        subprocess.run([*podman, "rmi", "-f", pname], capture_output=True, env=penv)
        return timed([*podman, "load", "-q", "-i", archive], env=penv)

    cases = [
        ("save docker-archive", lambda: m_save("docker-archive"),
         lambda: p_save("docker-archive")),
        ("save oci-archive", lambda: m_save("oci-archive"), lambda: p_save("oci-archive")),
        ("load docker-archive", lambda: m_load(podman_docker), lambda: p_load(podman_docker)),
        ("load oci-archive", lambda: m_load(podman_oci), lambda: p_load(podman_oci)),
    ]
    rng = random.Random(args.seed)
    times = {name: {"minibox": [], "podman": []} for name, _, _ in cases}
    for rnd in range(args.rounds):
        jobs = [(name, "minibox", m) for name, m, _ in cases] + \
               [(name, "podman", p) for name, _, p in cases]
        rng.shuffle(jobs)
        for name, tool, job in jobs:
            times[name][tool].append(job())
        if sys.stdout.isatty():
            print(f"\rround {rnd + 1}/{args.rounds}", end="", flush=True)
    if sys.stdout.isatty():
        print()

    load1, load5, _ = os.getloadavg()
    note(f"\n{args.rounds} rounds, median seconds; machine load average {load1:.2f} (1 min), "
         f"{load5:.2f} (5 min), {os.cpu_count()} cores")
    note(f"{'':<22}{'minibox':>10}{'podman':>10}{'minibox/podman':>16}")
    results = {}
    for name, _, _ in cases:
        m = statistics.median(times[name]["minibox"])
        p = statistics.median(times[name]["podman"])
        results[name] = {"minibox": m, "podman": p, "ratio": m / p,
                         "all": times[name]}
        note(f"{name:<22}{m:>10.3f}{p:>10.3f}{m / p:>16.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size_bytes": size, "files": files, "rounds": args.rounds,
                       "loadavg": [load1, load5], "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
