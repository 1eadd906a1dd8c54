"""`minibox mkrootfs [DIR]`: build the default busybox root filesystem (default: ./rootfs).

It is made on the machine from Debian's busybox-static, never committed: busybox plus
a link per applet, /etc/passwd, /etc/group, /etc/hostname and the empty directories
the runtime mounts over.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from minibox.errors import MiniboxError

BUSYBOX = "/bin/busybox"
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "student:x:1000:1000:student:/home/student:/bin/sh\n"
          "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
GROUP = ("root:x:0:\ndaemon:x:1:\ntty:x:5:\nstudent:x:1000:\nnogroup:x:65534:\n")


def build(target: str, busybox: str = BUSYBOX) -> None:
    if not os.path.isfile(busybox):
        raise MiniboxError(f"{busybox} not found: install it with apt-get install busybox-static")
    with open(busybox, "rb") as f:
        # A dynamic binary names its loader near the start (ELF PT_INTERP); the rootfs
        # has no libraries, so only a static busybox runs there.
        if b"ld-linux" in f.read(4096):
            raise MiniboxError(f"{busybox} is dynamically linked: apt-get install busybox-static")
    os.makedirs(target, exist_ok=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys/fs/cgroup", "dev", "root",
              "home/student", "var/log", "run", "tmp", "mnt"):
        os.makedirs(os.path.join(target, d), exist_ok=True)
    os.chmod(os.path.join(target, "tmp"), 0o1777)
    os.chmod(os.path.join(target, "root"), 0o700)
    os.chown(os.path.join(target, "home/student"), 1000, 1000)
    dest = os.path.join(target, "bin/busybox")
    shutil.copy2(busybox, dest + ".new")
    os.replace(dest + ".new", dest)
    applets = subprocess.run([dest, "--list-full"], capture_output=True, text=True,
                             check=True).stdout.split()
    for applet in applets:
        path = os.path.join(target, applet)
        if applet == "bin/busybox" or os.path.lexists(path):
            continue
        # Relative links keep working wherever the rootfs directory sits.
        os.symlink(os.path.relpath(dest, os.path.dirname(path)), path)
    _write(os.path.join(target, "etc/passwd"), PASSWD)
    _write(os.path.join(target, "etc/group"), GROUP)
    _write(os.path.join(target, "etc/hostname"), "minibox\n")
    _write(os.path.join(target, "etc/hosts"), "127.0.0.1\tlocalhost\n::1\tlocalhost\n")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    target = argv[0] if argv else "rootfs"
    build(target)
    print(f"minibox: busybox rootfs ready in {os.path.abspath(target)}")
    return 0
