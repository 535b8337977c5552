"""The watchdog (``biomedjax.train.watchdog``): a hang, or a signal the main thread cannot
handle, ends the process with a message naming the step, the phase and what is not saved.

Each case runs a small script in a subprocess (the watchdog ends its process). The main thread
blocks as in a collective: in C, in a wait that signals do not interrupt (a self-deadlocked
pthread mutex), so Python's own signal handler never runs.
"""

import pathlib
import signal
import subprocess
import sys
import textwrap

REPO = pathlib.Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import ctypes, sys, threading, time
    from biomedjax.train import watchdog
    watchdog.GRACE_S = float(sys.argv[3])
    libc = ctypes.CDLL(None)

    def block_in_c():  # like a collective waiting for a peer: no Python runs, signals or not
      mutex = ctypes.create_string_buffer(64)  # zeroed = PTHREAD_MUTEX_INITIALIZER (glibc)
      libc.pthread_mutex_lock(mutex)
      threading.Thread(target=ready_once_blocked, daemon=True).start()
      libc.pthread_mutex_lock(mutex)

    def ready_once_blocked():  # READY only once the main thread waits in C
      main = threading.main_thread().ident
      while sys._current_frames()[main].f_code.co_name != "block_in_c":
        time.sleep(0.05)
      time.sleep(0.5)
      print("READY", flush=True)

    with watchdog.Guard(saved_step=2, hang_timeout_s=float(sys.argv[2])) as guard:
      guard.at(2, "train step", watch=False)
      guard.at(3, "train step")
      guard.at(3, "checkpoint save")
      if sys.argv[1] == "blocked":
        block_in_c()
      print("READY", flush=True)
      while True:  # "busy": a long save that does check for signals
        time.sleep(0.05)
""")


def _start(mode: str, hang_timeout_s: float, grace_s: float = 1.0,
           ready: bool = True) -> subprocess.Popen:
  """The script; with ``ready``, once it is blocked (or busy). The watchdog's grace is
  ``grace_s``: 1 s keeps the exits quick, a long one keeps a starved handler from counting as
  blocked where the test is about something else."""
  proc = subprocess.Popen([sys.executable, "-c", SCRIPT, mode, str(hang_timeout_s), str(grace_s)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  if ready:
    assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
  return proc


def test_a_hang_is_an_error_naming_the_step_and_what_it_waited_in():
  proc = _start("blocked", 1, ready=False)  # it may end (~2 s) before a starved READY thread
  stderr = proc.communicate(timeout=120)[1]
  assert proc.returncode == 1, stderr
  assert "no progress for" in stderr and "in checkpoint save at step 3" in stderr, stderr
  assert "the last checkpoint is step 2; training after step 2 (up to step 3) is lost" in stderr


def test_a_signal_while_blocked_exits_at_once_saying_what_is_not_saved():
  proc = _start("blocked", 0)  # no hang detection (one process): only the signal ends it
  proc.send_signal(signal.SIGTERM)
  stderr = proc.communicate(timeout=120)[1]
  assert proc.returncode == 128 + signal.SIGTERM, stderr
  assert "SIGTERM received while the main thread has been blocked" in stderr, stderr
  assert "in checkpoint save at step 3" in stderr and "the last checkpoint is step 2" in stderr


def test_a_second_signal_exits_at_once():
  proc = _start("busy", 0, grace_s=60)
  proc.send_signal(signal.SIGINT)
  line = proc.stderr.readline()
  while "SIGINT received: saving a checkpoint" not in line:  # the first one was handled
    assert line, "no log line for the first signal"
    line = proc.stderr.readline()
  proc.send_signal(signal.SIGINT)
  stderr = proc.communicate(timeout=120)[1]
  assert proc.returncode == 128 + signal.SIGINT, stderr
  assert "SIGINT received again; exiting now without a checkpoint" in stderr, stderr
