"""One run per workdir (``biomedjax.train.workdir_lock``): the lock file's cases without a run
(a second launch on a busy workdir is in tests/faults/test_faults.py)."""

import json
import logging
import socket
import subprocess

import pytest

from biomedjax.train import workdir_lock


def _write_lock(workdir, host, pid):
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / workdir_lock.LOCK_FILE).write_text(json.dumps(
      {"host": host, "pid": pid, "started": "2026-01-01T00:00:00+00:00"}))


def test_a_lock_left_by_a_dead_process_on_this_host_is_taken_over(tmp_path, caplog):
  dead = subprocess.Popen(["true"])
  dead.wait()
  _write_lock(tmp_path, socket.gethostname(), dead.pid)
  with caplog.at_level(logging.WARNING, logger="biomedjax"):
    with workdir_lock.hold(tmp_path):
      holder = json.loads((tmp_path / workdir_lock.LOCK_FILE).read_text())
      assert holder["pid"] != dead.pid and holder["host"] == socket.gethostname()
  assert f"taking over the lock of a run that is gone (PID {dead.pid}" in caplog.text
  assert not (tmp_path / workdir_lock.LOCK_FILE).exists()  # released


@pytest.mark.parametrize("host", ["another-host.example", None])
def test_a_live_or_foreign_holder_refuses_naming_it(tmp_path, host):
  live = subprocess.Popen(["sleep", "60"])
  try:
    _write_lock(tmp_path, host or socket.gethostname(), live.pid)
    before = (tmp_path / workdir_lock.LOCK_FILE).read_text()
    with pytest.raises(workdir_lock.WorkdirLocked, match=f"in use by another run \\(PID {live.pid} "
                       f"on host {host or socket.gethostname()} since 2026-01-01"):
      with workdir_lock.hold(tmp_path):
        pass
    assert (tmp_path / workdir_lock.LOCK_FILE).read_text() == before  # not touched
  finally:
    live.kill()
    live.wait()


def test_locks_are_reentrant_in_one_process(tmp_path):
  with workdir_lock.hold(tmp_path / "a", tmp_path / "b"):
    with workdir_lock.hold(tmp_path / "a"):  # a packed point run alone inside its pack
      pass
    assert (tmp_path / "a" / workdir_lock.LOCK_FILE).exists()
  assert not (tmp_path / "a" / workdir_lock.LOCK_FILE).exists()
  assert not (tmp_path / "b" / workdir_lock.LOCK_FILE).exists()
