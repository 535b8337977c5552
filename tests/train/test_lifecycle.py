"""biomedjax.train.lifecycle: when checkpoints are due, signals, the loss history."""

import os
import signal

from biomedjax.train import lifecycle


class Clock:
  def __init__(self):
    self.t = 0.0

  def __call__(self):
    return self.t


def test_checkpoint_every_epoch_every_n_minutes_and_at_the_end():
  clock = Clock()
  policy = lifecycle.CheckpointPolicy(steps_per_epoch=100, total=200, every_minutes=1.0,
                                      min_seconds=0, clock=clock)
  due = []
  for done in range(1, 201):
    clock.t += 1.0  # one step per second
    if policy.due(done):
      due.append(done)
  assert due == [60, 100, 160, 200]  # a minute, an epoch, a minute after that, the end


def test_tiny_epochs_save_at_most_every_min_seconds_but_always_on_a_stop():
  clock = Clock()
  policy = lifecycle.CheckpointPolicy(steps_per_epoch=2, total=100, every_minutes=10,
                                      min_seconds=30, clock=clock)
  due = []
  for done in range(1, 100):
    clock.t += 1.0
    if policy.due(done):
      due.append(done)
  assert due[0] == 2 and all(b - a >= 30 for a, b in zip(due, due[1:]))
  assert policy.due(99, stop_requested=True) and policy.due(100)


def test_sigint_sets_the_flag_and_a_second_one_raises():
  before = signal.getsignal(signal.SIGINT)
  with lifecycle.StopRequest() as stop:
    assert not stop
    os.kill(os.getpid(), signal.SIGINT)
    assert stop and stop.name == "SIGINT"
    try:
      os.kill(os.getpid(), signal.SIGINT)
      raise AssertionError("the second signal must raise")
    except KeyboardInterrupt:
      pass
  assert signal.getsignal(signal.SIGINT) is before


def test_history_survives_a_resume_cut_at_the_restored_step(tmp_path):
  h = lifecycle.History(tmp_path)
  for s in (2, 4, 6):
    h.append(s, float(s))
  h.save()
  h.append(8, 8.0)  # logged after the last checkpoint: replayed by the resumed run
  resumed = lifecycle.History(tmp_path)
  resumed.restore(4)
  assert resumed.entries == [(2, 2.0), (4, 4.0)]
