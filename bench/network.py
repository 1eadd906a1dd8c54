#!/usr/bin/env python3
"""Start time with a network: `run /bin/true` with --network bridge vs none, minibox vs podman.

Four commands, each run in the foreground to its end (container made, command run,
container removed), interleaved round by round so that machine load hits all alike:

  minibox run --network none   ROOTFS /bin/true
  minibox run --network bridge ROOTFS /bin/true
  podman run --rm --network none   IMAGE /bin/true     (crun underneath)
  podman run --rm --network bridge IMAGE /bin/true     (netavark makes podman0 and a veth)

IMAGE is `podman import` of the same busybox rootfs (no registry). Medians are printed
with the ratios that matter: minibox bridge / podman bridge, and what bridge adds over
none for each. minibox uses a private --root; podman's image is removed at the end.

    sudo .venv/bin/python bench/network.py [-n ROUNDS] [--no-podman]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINIBOX = os.path.join(REPO, ".venv", "bin", "minibox")
ROOTFS = os.path.join(REPO, "rootfs")
PODMAN_GLOBAL = ["--cgroup-manager=cgroupfs", "--events-backend=file"]
PODMAN_RUN = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def timed(argv: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(argv)}\n{r.stderr.strip()}")
    return dt


def import_image(podman: str, tag: str) -> None:
    tar = subprocess.Popen(["tar", "-C", ROOTFS, "-c", "."], stdout=subprocess.PIPE)
    r = subprocess.run([podman, *PODMAN_GLOBAL, "import", "-", tag], stdin=tar.stdout,
                       capture_output=True, text=True)
    tar.stdout.close()
    tar.wait()
    if r.returncode != 0:
        sys.exit(f"podman import failed: {r.stderr.strip()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--rounds", type=int, default=20)
    p.add_argument("--no-podman", action="store_true")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    root = tempfile.mkdtemp(prefix="minibox-bench-net-")
    mb = [MINIBOX, "--root", root, "run"]
    cmds = {"minibox none": mb + ["--network", "none", ROOTFS, "/bin/true"],
            "minibox bridge": mb + ["--network", "bridge", ROOTFS, "/bin/true"]}
    podman = None if args.no_podman else shutil.which("podman")
    tag = f"localhost/minibox-bench-net:{secrets.token_hex(4)}"
    try:
        if podman:
            import_image(podman, tag)
            base = [podman, *PODMAN_GLOBAL, "run", "--rm", *PODMAN_RUN]
            cmds["podman none"] = base + ["--network", "none", tag, "/bin/true"]
            cmds["podman bridge"] = base + ["--network", "bridge", tag, "/bin/true"]
        for argv in cmds.values():  # warm-up: page cache, the bridge made once, imports
            timed(argv)
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(args.rounds):
            for name, argv in cmds.items():
                times[name].append(timed(argv))
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        print(f"run /bin/true, {args.rounds} rounds, median ms "
              f"(load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)")
        for k, v in med.items():
            spread = statistics.quantiles(times[k], n=4) if len(times[k]) > 1 else [0, 0, 0]
            print(f"  {k:<16} {v:8.1f}   (quartiles {spread[0] * 1000:.1f} - "
                  f"{spread[2] * 1000:.1f})")
        print(f"minibox: bridge adds {med['minibox bridge'] - med['minibox none']:.1f} ms "
              "over none")
        if podman:
            print(f"podman:  bridge adds {med['podman bridge'] - med['podman none']:.1f} ms "
                  "over none")
            print(f"ratio minibox bridge / podman bridge = "
                  f"{med['minibox bridge'] / med['podman bridge']:.2f}")
            print(f"ratio minibox none / podman none     = "
                  f"{med['minibox none'] / med['podman none']:.2f}")
    finally:
        if podman:
            subprocess.run([podman, *PODMAN_GLOBAL, "rmi", "-f", tag], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
