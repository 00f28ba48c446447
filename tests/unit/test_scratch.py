"""What a killed sweep leaves in the temp folder (its data share, its lent-threads file) is removed by the next
one of this machine: entries of processes that are gone, never those of live processes or other machines."""

import os
import subprocess
import sys
import tempfile

from src import scratch
from src.data.shared import SHARE_KIND, DataShare


def _gone_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_new_share_removes_the_shares_of_dead_processes_of_this_machine_only(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    machine = scratch._machine()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = tmp_path / f"{SHARE_KIND}{machine}-{_gone_pid()}-abc"
        alive = tmp_path / f"{SHARE_KIND}{machine}-{live.pid}-def"
        elsewhere = tmp_path / f"{SHARE_KIND}othermachine-{_gone_pid()}-ghi"  # a temp folder shared over a network
        older = tmp_path / f"{SHARE_KIND}x1y2z3"  # named before shares named their process: left alone
        for folder in (dead, alive, elsewhere, older):
            (folder / "entry").mkdir(parents=True)
            (folder / "entry" / "X_train.npy").write_bytes(b"0" * 100)
        lent = tmp_path / f"netsweep-threads-{machine}-{_gone_pid()}-jkl"
        lent.write_text("2")
        share = DataShare.create()
        assert not dead.exists() and alive.exists() and elsewhere.exists() and older.exists()
        assert share.folder.startswith(str(tmp_path / f"{SHARE_KIND}{machine}-{os.getpid()}-"))
        assert lent.exists()  # another kind: removed by the next lent-threads file, not by a share
        made = scratch.make_file("netsweep-threads-")
        assert not lent.exists() and os.path.isfile(made) and os.path.exists(share.folder)
    finally:
        live.kill()
        live.wait()
    share.remove()


HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""


def test_an_entry_whose_owner_lock_is_held_stays_whatever_its_process_id_says(tmp_path, monkeypatch):
    # A process of another PID namespace (a container sharing /tmp and the host's name): its id looks gone from
    # here, but the lock it holds on its entry's owner file says it lives.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    held = tmp_path / f"{SHARE_KIND}{scratch._machine()}-{_gone_pid()}-abc"
    held.mkdir()
    owner = tmp_path / (held.name + scratch.OWNER)
    owner.touch()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(owner)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert scratch.remove_orphans(SHARE_KIND) == [] and held.exists()
    finally:
        holder.kill()
        holder.wait()
    assert scratch.remove_orphans(SHARE_KIND) == [held] and not held.exists() and not owner.exists()


PROBE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("free")
except BlockingIOError:
    print("held")
"""


def test_an_entry_is_owned_from_before_it_exists_until_it_is_released(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    share = DataShare.create()
    owner = share.folder + scratch.OWNER
    assert os.path.isdir(share.folder) and os.path.isfile(owner)
    probe = subprocess.run([sys.executable, "-c", PROBE, owner], capture_output=True, text=True, check=True)
    assert probe.stdout == "held\n"  # another process cannot take the lock: the entry is alive
    assert scratch.remove_orphans(SHARE_KIND) == [] and os.path.isdir(share.folder)
    share.remove()
    assert not os.path.exists(share.folder) and not os.path.exists(owner)
    left = tmp_path / f"{SHARE_KIND}{scratch._machine()}-{_gone_pid()}-xyz{scratch.OWNER}"
    left.touch()  # an owner file whose entry is gone, its process ended
    scratch.remove_orphans(SHARE_KIND)
    assert not left.exists()
