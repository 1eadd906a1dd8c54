"""The teaching VM's Vagrantfile must be valid for `vagrant up`.

`vagrant validate --ignore-provider` loads and checks the Vagrantfile without
a box, a provider or the network (verified with strace: Debian's vagrant makes
no network calls for it, and the checkpoint version check is disabled below
for upstream builds that have it). Each call takes about a second.

Nothing here skips: a missing vagrant is a failure, because then the
Vagrantfile is simply untested.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VAGRANTFILE = REPO / "Vagrantfile"


def need_vagrant():
    # Called inside each test (not a fixture) so a missing vagrant shows as
    # a FAILED test with this message, never as a skip or a setup error.
    path = shutil.which("vagrant")
    if path is None:
        pytest.fail("vagrant is not installed, so the Vagrantfile cannot be checked: "
                    "apt-get install -y vagrant (.ci/setup installs it too)")
    return path


@pytest.fixture(scope="module")
def vagrant_home(tmp_path_factory):
    # A private VAGRANT_HOME keeps the test independent of (and from
    # writing to) the user's ~/.vagrant.d and its plugins/boxes.
    return tmp_path_factory.mktemp("vagrant-home")


def validate(vagrant_home, directory, tmp_path):
    vagrant = need_vagrant()
    env = {k: v for k, v in os.environ.items()
           # Any of these would make vagrant check some other Vagrantfile
           # or provider than the one under test.
           if k not in ("VAGRANT_VAGRANTFILE", "VAGRANT_DEFAULT_PROVIDER",
                        "VAGRANT_DOTFILE_PATH", "VAGRANT_CWD")}
    env.update(
        VAGRANT_CHECKPOINT_DISABLE="1",   # no version check over the network
        VAGRANT_HOME=str(vagrant_home),
        VAGRANT_CWD=str(directory),
        # Vagrant creates its dotfile dir (.vagrant/) next to the
        # Vagrantfile even for validate; keep it out of the repo.
        VAGRANT_DOTFILE_PATH=str(tmp_path / "dotfile"),
        VAGRANT_NO_COLOR="1",
    )
    return subprocess.run(
        [vagrant, "validate", "--ignore-provider"],
        cwd=directory, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
    )


def test_vagrantfile_validates(vagrant_home, tmp_path):
    r = validate(vagrant_home, REPO, tmp_path)
    assert r.returncode == 0, f"vagrant validate failed:\n{r.stdout}"
    assert "validated successfully" in r.stdout, r.stdout
    assert not (REPO / ".vagrant").exists(), "validate left .vagrant/ in the repo"


def test_syntax_error_is_caught(vagrant_home, tmp_path):
    # Proves the first test can fail: the same file minus its final `end`
    # is a Ruby syntax error that validate must reject.
    broken = tmp_path / "vm"
    broken.mkdir()
    text = VAGRANTFILE.read_text()
    cut = text.rstrip().rfind("\nend")
    assert cut != -1, "Vagrantfile does not end with `end`"
    (broken / "Vagrantfile").write_text(text[:cut] + "\n")
    r = validate(vagrant_home, broken, tmp_path)
    assert r.returncode != 0, f"validate accepted a broken Vagrantfile:\n{r.stdout}"
    assert "syntax error" in r.stdout.lower(), r.stdout


def test_unknown_setting_is_caught(vagrant_home, tmp_path):
    # Validate checks settings, not only Ruby syntax: a misspelt key fails.
    bad = tmp_path / "vm"
    bad.mkdir()
    text = VAGRANTFILE.read_text()
    text, n = re.subn(r"config\.vm\.box\s*=", "config.vm.boxx =", text, count=1)
    assert n == 1
    (bad / "Vagrantfile").write_text(text)
    r = validate(vagrant_home, bad, tmp_path)
    assert r.returncode != 0, f"validate accepted an unknown setting:\n{r.stdout}"
    assert "boxx" in r.stdout, r.stdout


def test_vm_is_what_the_course_expects():
    # validate cannot tell a 1-CPU Ubuntu VM from the intended one.
    text = VAGRANTFILE.read_text()
    assert re.search(r'config\.vm\.box\s*=\s*"debian/bookworm64"', text)
    assert len(re.findall(r"\.cpus\s*=\s*2\b", text)) >= 1
    assert len(re.findall(r"\.memory\s*=\s*4096\b", text)) >= 1
    assert re.search(r"privileged:\s*true", text)
    assert "bash .ci/setup" in text
    assert "sudo minibox run rootfs/ /bin/sh" in text
