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
