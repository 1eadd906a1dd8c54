"""The options of `minibox run`: environment, user, filesystems, shared namespaces, masks."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import pytest

# --- environment ------------------------------------------------------------------------


def env_of(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)


def test_default_environment(minibox, rootfs):
    r = minibox(rootfs, "env", env={**os.environ, "LEAKME": "from-the-host"})
    assert r.returncode == 0, r.stderr
    env = env_of(r.stdout)
    assert env["HOME"] == "/root"
    assert env["PATH"].split(":")[-1] == "/bin"
    assert re.fullmatch(r"[0-9a-f]{12}", env["HOSTNAME"])
    # Nothing of minibox's own environment reaches the container; no TERM without -t.
    assert "LEAKME" not in env and "TERM" not in env


def test_env_flag(minibox, rootfs):
    r = minibox("-e", "FOO=bar", "--env", "EMPTY=", "-e", "EQ=a=b", "-e", "SPACES=x y",
                rootfs, "env")
    assert r.returncode == 0, r.stderr
    env = env_of(r.stdout)
    assert (env["FOO"], env["EMPTY"], env["EQ"], env["SPACES"]) == ("bar", "", "a=b", "x y")


def test_env_flag_takes_the_hosts_value(minibox, rootfs):
    r = minibox("-e", "FROMHOST", "-e", "UNSETONHOST", rootfs, "env",
                env={**os.environ, "FROMHOST": "yes"})
    assert r.returncode == 0, r.stderr
    env = env_of(r.stdout)
    assert env["FROMHOST"] == "yes" and "UNSETONHOST" not in env


def test_env_overrides_defaults(minibox, rootfs):
    r = minibox("-e", "HOME=/elsewhere", "-e", "PATH=/bin", rootfs, "sh", "-c",
                'echo "$HOME $PATH"')
    assert (r.returncode, r.stdout) == (0, "/elsewhere /bin\n"), r.stderr


def test_env_file(minibox, rootfs, tmp_path):
    env_file = tmp_path / "env.list"
    env_file.write_text("# a comment\n\nA=1\nB=two words\nC=from-file\n")
    r = minibox("--env-file", env_file, "-e", "C=from-flag", rootfs, "env")
    assert r.returncode == 0, r.stderr
    env = env_of(r.stdout)
    assert (env["A"], env["B"], env["C"]) == ("1", "two words", "from-flag")
    assert "# a comment" not in r.stdout


# --- working directory and user ---------------------------------------------------------

def test_workdir(minibox, rootfs):
    r = minibox("-w", "/etc", rootfs, "sh", "-c", "pwd; ls passwd")
    assert (r.returncode, r.stdout) == (0, "/etc\npasswd\n"), r.stderr


def test_default_workdir_is_root(minibox, rootfs):
    r = minibox(rootfs, "pwd")
    assert (r.returncode, r.stdout) == (0, "/\n"), r.stderr


def test_user_uid_gid(minibox, rootfs):
    r = minibox("-u", "1000:1000", rootfs, "sh", "-c", "id -u; id -g; id -G")
    assert (r.returncode, r.stdout.split()) == (0, ["1000", "1000", "1000"]), r.stderr


def test_user_by_name_gets_its_home(minibox, rootfs):
    r = minibox("-u", "student", rootfs, "sh", "-c", 'id -un; echo "$HOME"')
    assert (r.returncode, r.stdout) == (0, "student\n/home/student\n"), r.stderr


def test_user_is_really_unprivileged(minibox, rootfs):
    r = minibox("--overlay", "-u", "1000", rootfs, "sh", "-c",
                "touch /etc/x || echo denied; hostname x || echo denied")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "denied\ndenied\n"
    assert "Permission denied" in r.stderr or "Operation not permitted" in r.stderr


def test_user_seen_from_the_host(spawn, rootfs):
    c = spawn("-u", "1000:1000", rootfs, "sleep", "30")
    assert c.status("Uid").split() == ["1000"] * 4
    assert c.status("Gid").split() == ["1000"] * 4
    assert c.status("Groups").split() == []


# --- the root filesystem ----------------------------------------------------------------

def test_read_only_root(minibox, rootfs):
    r = minibox("--read-only", rootfs, "sh", "-c", "touch /made-inside; echo rc=$?")
    assert r.stdout == "rc=1\n", r.stderr
    assert "Read-only file system" in r.stderr
    assert not os.path.lexists(f"{rootfs}/made-inside")


def test_read_only_root_with_writable_tmpfs(minibox, rootfs):
    r = minibox("--read-only", "--tmpfs", "/tmp", rootfs, "sh", "-c",
                "echo hi > /tmp/f && cat /tmp/f; touch /etc/f; echo rc=$?")
    assert r.stdout == "hi\nrc=1\n", r.stderr
    assert "Read-only file system" in r.stderr
    assert not os.path.lexists(f"{rootfs}/tmp/f")


def test_read_only_seen_in_mountinfo(minibox, rootfs):
    r = minibox("--read-only", rootfs, "cat", "/proc/self/mountinfo")
    root = next(line for line in r.stdout.splitlines() if line.split()[4] == "/")
    assert root.split()[5].split(",")[0] == "ro", root


def test_overlay_keeps_the_rootfs_untouched(minibox, rootfs):
    marker = Path(rootfs) / "etc" / "overlay-test"
    r = minibox("--overlay", rootfs, "sh", "-c",
                "echo changed > /etc/overlay-test && cat /etc/overlay-test && "
                "rm /etc/hostname && ls /etc/hostname 2>/dev/null; "
                "grep ' / / ' /proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "changed"
    assert " - overlay " in lines[1], lines[1]
    assert not marker.exists()
    assert (Path(rootfs) / "etc" / "hostname").exists()
    # The scratch dir (upper and work dirs) was on the host and is gone now.
    upper = re.search(r"upperdir=([^,\s]+)", lines[1]).group(1)
    assert upper.startswith("/run/minibox/"), upper
    assert not os.path.exists(os.path.dirname(upper))


def test_overlay_seen_from_the_host(spawn, rootfs):
    c = spawn("--overlay", rootfs, "sh", "-c", "echo x > /etc/from-overlay; sleep 30")
    root = next(line for line in Path(f"/proc/{c.pid}/mountinfo").read_text().splitlines()
                if line.split()[4] == "/")
    scratch = os.path.dirname(re.search(r"upperdir=([^,\s]+)", root).group(1))
    assert os.path.isdir(scratch) and scratch.startswith("/run/minibox/")
    # The overlay and its tmpfs live in the container's mount namespace only.
    host = Path("/proc/self/mountinfo").read_text()
    assert scratch not in host and " overlay " not in host.replace(" - overlay ", "")
    assert not (Path(rootfs) / "etc" / "from-overlay").exists()
    c.stop()
    assert not os.path.exists(scratch)


# --- volumes and tmpfs ------------------------------------------------------------------

def test_volume_read_write(minibox, rootfs_copy, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "from-host").write_text("host data\n")
    r = minibox("-v", f"{vol}:/data", rootfs_copy, "sh", "-c",
                "cat /data/from-host; echo container data > /data/from-container")
    assert (r.returncode, r.stdout) == (0, "host data\n"), r.stderr
    assert (vol / "from-container").read_text() == "container data\n"
    # docker's manners: the mount point is made in the rootfs when it is missing.
    assert (Path(rootfs_copy) / "data").is_dir()


def test_volume_read_only(minibox, rootfs_copy, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "f").write_text("original\n")
    r = minibox("-v", f"{vol}:/data:ro", rootfs_copy, "sh", "-c",
                "cat /data/f; echo changed > /data/f; echo rc=$?; touch /data/new; echo rc=$?")
    assert r.stdout == "original\nrc=1\nrc=1\n", r.stderr
    assert "Read-only file system" in r.stderr
    assert (vol / "f").read_text() == "original\n"
    assert not (vol / "new").exists()


def test_volume_missing_host_dir_is_created(minibox, rootfs_copy, tmp_path):
    vol = tmp_path / "created" / "by-minibox"
    r = minibox("-v", f"{vol}:/data", rootfs_copy, "sh", "-c", "echo x > /data/f")
    assert r.returncode == 0, r.stderr
    assert (vol / "f").read_text() == "x\n"


def test_volume_of_a_file(minibox, rootfs_copy, tmp_path):
    f = tmp_path / "config"
    f.write_text("setting=1\n")
    r = minibox("-v", f"{f}:/etc/app.conf:ro", rootfs_copy, "cat", "/etc/app.conf")
    assert (r.returncode, r.stdout) == (0, "setting=1\n"), r.stderr


def test_volume_seen_from_the_host(spawn, rootfs_copy, tmp_path):
    vol = tmp_path / "vol"
    vol.mkdir()
    c = spawn("-v", f"{vol}:/data", rootfs_copy, "sh", "-c",
              "while [ ! -e /data/go ]; do sleep 0.05; done; echo seen > /data/reply; sleep 30")
    (vol / "go").write_text("")
    reply = vol / "reply"
    for _ in range(200):
        if reply.exists() and reply.read_text():
            break
        time.sleep(0.02)
    assert reply.read_text() == "seen\n"
    # The bind mount is in the container's mount table only.
    assert str(vol) not in Path("/proc/self/mountinfo").read_text()
    inside = Path(f"/proc/{c.pid}/mountinfo").read_text()
    assert re.search(r"^\S+ \S+ \S+ \S+ /data ", inside, re.M), inside


def test_tmpfs(minibox, rootfs):
    r = minibox("--tmpfs", "/tmp", "--tmpfs", "/run:size=1m", rootfs, "sh", "-c",
                "echo hi > /tmp/f && cat /tmp/f; grep -E ' /(tmp|run) ' /proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "hi"
    tmp = next(line for line in lines[1:] if line.split()[4] == "/tmp")
    run = next(line for line in lines[1:] if line.split()[4] == "/run")
    assert " - tmpfs " in tmp and " - tmpfs " in run
    assert "size=1024k" in run
    assert "noexec" in tmp.split()[5] and "nosuid" in tmp.split()[5]
    assert not os.path.exists(f"{rootfs}/tmp/f")


# --- sharing one host namespace ---------------------------------------------------------

@pytest.mark.parametrize("shared", ["net", "pid", "ipc", "uts"])
def test_sharing_one_namespace_seen_from_the_host(spawn, rootfs, shared):
    c = spawn(f"--{shared}=host", rootfs, "sleep", "30")
    for ns in ("net", "pid", "ipc", "uts", "mnt", "cgroup"):
        same = c.ns(ns) == os.readlink(f"/proc/self/ns/{ns}")
        assert same == (ns == shared), f"--{shared}=host: {ns} namespace shared: {same}"


def test_net_host(minibox, rootfs):
    r = minibox("--net=host", rootfs, "ls", "/sys/class/net")
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == sorted(os.listdir("/sys/class/net"))
    assert len(r.stdout.split()) > 1


def test_pid_host(minibox, rootfs):
    r = minibox("--pid=host", rootfs, "sh", "-c", "echo $$; cat /proc/1/cmdline")
    assert r.returncode == 0, r.stderr
    pid, _, init_cmdline = r.stdout.partition("\n")
    assert pid != "1"
    assert init_cmdline.encode() == Path("/proc/1/cmdline").read_bytes()
    assert str(os.getpid()) in minibox("--pid=host", rootfs, "ls", "/proc").stdout.split()


def test_pid_host_leaves_no_process_behind(minibox, rootfs):
    # With the host's PID namespace there is no namespace init whose end kills the
    # rest: the container's other processes must still end with the container (runc
    # kills every process of the container's cgroup; docker run --pid=host does that).
    r = minibox("--pid=host", rootfs, "sh", "-c", "sleep 60 & echo $!")
    assert r.returncode == 0, r.stderr
    bg = int(r.stdout)
    left = False
    for _ in range(50):
        stat = Path(f"/proc/{bg}/cmdline")
        left = stat.exists() and stat.read_bytes() == b"sleep\x0060\x00"
        if not left:
            break
        time.sleep(0.02)
    if left:
        os.kill(bg, 9)
    assert not left, f"`sleep 60` (pid {bg}) still runs after minibox --pid=host returned"


def test_uts_host(minibox, rootfs):
    r = minibox("--uts=host", rootfs, "hostname")
    assert (r.returncode, r.stdout) == (0, socket.gethostname() + "\n"), r.stderr


def test_uts_host_hostname_variable(minibox, rootfs):
    # $HOSTNAME names the hostname the command sees (docker sets the host's name).
    r = minibox("--uts=host", rootfs, "sh", "-c", 'echo "$HOSTNAME"; hostname')
    assert r.returncode == 0, r.stderr
    env_name, real_name = r.stdout.splitlines()
    assert env_name == real_name == socket.gethostname()


def test_ipc_host(minibox, rootfs, host_shm, shm_ids_of):
    r = minibox("--ipc=host", rootfs, "cat", "/proc/sysvipc/shm")
    assert r.returncode == 0, r.stderr
    assert host_shm in shm_ids_of(r.stdout)
    # and the default still hides it, in the same run of the suite
    assert host_shm not in shm_ids_of(minibox(rootfs, "cat", "/proc/sysvipc/shm").stdout)


# --- masked and read-only paths ---------------------------------------------------------

MASKED_FILES = ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/latency_stats",
                "/proc/timer_stats", "/proc/sched_debug")
MASKED_DIRS = ("/proc/acpi", "/proc/asound", "/proc/scsi", "/sys/firmware")


def test_kcore_reads_empty(minibox, rootfs):
    r = minibox(rootfs, "sh", "-c", "cat /proc/kcore | wc -c; test -e /proc/kcore; echo $?")
    size, exists = r.stdout.split()
    assert size == "0", r.stdout
    # This kernel may have no /proc/kcore at all; inside it is there exactly when it is
    # there on the host, and reads as nothing.
    assert (exists == "0") == os.path.exists("/proc/kcore")


def test_masked_paths_read_empty(minibox, rootfs):
    script = "; ".join(
        [f"if [ -e {p} ]; then echo {p} $(cat {p} | wc -c); fi" for p in MASKED_FILES]
        + [f"if [ -e {p} ]; then echo {p} $(ls -A {p} | wc -l); fi" for p in MASKED_DIRS])
    r = minibox(rootfs, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    seen = dict(line.split() for line in r.stdout.splitlines())
    on_host = [p for p in MASKED_FILES + MASKED_DIRS if os.path.exists(p)]
    assert sorted(seen) == sorted(on_host)
    assert all(n == "0" for n in seen.values()), seen
    # What is hidden has something to hide on the host (so this test can fail).
    assert any(os.path.isfile(p) and Path(p).read_bytes() for p in on_host)
    assert any(os.path.isdir(p) and os.listdir(p) for p in on_host)


def test_proc_sys_is_read_only(minibox, rootfs):
    before = Path("/proc/sys/kernel/domainname").read_text()
    r = minibox(rootfs, "sh", "-c",
                "echo changed > /proc/sys/kernel/domainname; echo rc=$?; "
                "grep ' /proc/sys ' /proc/self/mountinfo")
    lines = r.stdout.splitlines()
    assert lines[0] == "rc=1", r.stdout + r.stderr
    assert "Read-only file system" in r.stderr
    assert lines[1].split()[5].startswith("ro"), lines[1]
    assert Path("/proc/sys/kernel/domainname").read_text() == before
