"""The cgroup suite again, on pure cgroup v2: tests/test_cgroups.py inside the qemu guest.

This host runs cgroup v1 (hybrid), so tests/v2guest/run.sh boots a throw-away guest with
`cgroup_no_v1=all` and the host's tree read-only over 9p, and runs the same test file
there. The guest's output is printed whatever happens, so CI logs show the v2 run.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITE = "tests/test_cgroups.py"
PYTEST = [".venv/bin/python", "-m", "pytest", "-q", "-p", "no:cacheprovider"]

# What the guest runs: show that its cgroups are v2 only, then the suite.
GUEST_JOB = f"""
echo "guest cgroupfs: $(stat -fc %T /sys/fs/cgroup)"
grep ' - cgroup2 ' /proc/self/mountinfo | sed 's/^/guest mount: /'
echo "guest v1 hierarchies: $(grep -c ' - cgroup ' /proc/self/mountinfo)"
exec env PYTHONDONTWRITEBYTECODE=1 {' '.join(PYTEST)} -rfEs {SUITE}
"""


def _host_test_count() -> int:
    r = subprocess.run([*PYTEST, "--collect-only", SUITE], cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    m = re.search(r"^(\d+) tests? collected", r.stdout, re.M)
    assert m, r.stdout + r.stderr
    return int(m.group(1))


def test_cgroup_suite_passes_in_a_cgroup_v2_guest(capsys):
    if os.environ.get("MINIBOX_V2GUEST"):
        # Already inside the guest (someone ran all of tests/ there): no guest in a guest;
        # the suite itself runs here directly, so just insist this is the v2 machine.
        mounts = [line.split(" - ")[1].split()[0] for line in
                  Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4] == "/sys/fs/cgroup"]
        assert mounts == ["cgroup2"], mounts
        return
    want = _host_test_count()
    r = subprocess.run(["bash", "tests/v2guest/run.sh", "--timeout", "900", "--", "sh", "-c",
                        GUEST_JOB], cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=960)
    with capsys.disabled():
        print(f"\n----- cgroup v2 guest: {SUITE} -----")
        print(r.stdout.rstrip())
        print(r.stderr.rstrip())
        print("----- end of the cgroup v2 guest -----")
    assert r.returncode == 0, f"the guest run exited {r.returncode}"
    out = r.stdout
    # The guest really is v2: cgroup2 on /sys/fs/cgroup and no v1 hierarchy at all.
    assert "guest cgroupfs: cgroup2fs" in out
    assert re.search(r"^guest mount: .* /sys/fs/cgroup .* - cgroup2 ", out, re.M), out
    assert "guest v1 hierarchies: 0" in out
    # pytest's summary: all of the file's tests passed, none skipped (or anything else).
    summary = [line for line in out.splitlines() if re.search(r"\d+ passed", line)]
    assert summary, "no pytest summary in the guest output"
    assert re.fullmatch(rf"=*\s*{want} passed in [\d.]+s( \([\d:]+\))?\s*=*", summary[-1]), (
        f"want {want} passed and nothing else: {summary[-1]!r}")
