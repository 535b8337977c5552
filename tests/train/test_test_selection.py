"""eval.select="best_test": the reference's best-over-epochs test accuracy (the last epoch
excluded by default, as its logged Best Acc), resumable state, and the report's labels."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from biomedjax.evaluation import report
from biomedjax.train import test_selection as ts


def run(tmp_path, accs, best_over="logged"):
  it = iter(accs)
  sel = ts.TestSelection(tmp_path, lambda trainable: next(it), len(accs), best_over)
  for e in range(1, len(accs) + 1):
    sel.update(e, {"p": jnp.full((2,), float(e))})
  return sel


def test_best_is_the_reference_logged_value(tmp_path):
  # The reference logs Best Acc before updating it: its last line is max over epochs 1..E-1.
  sel = run(tmp_path, [0.5, 0.7, 0.7, 0.6, 0.9])
  s = sel.summary()
  assert (s["best_epoch"], s["best_test_accuracy"]) == (2, 0.7)  # ties keep the earliest
  assert s["last_test_accuracy"] == 0.9 and s["best_epochs_considered"] == "1..4"
  assert s["headline"] == "best_test" and s["test_accuracy_per_epoch"] == [0.5, 0.7, 0.7, 0.6,
                                                                           0.9]
  state = sel.final_state({"p": jnp.zeros(2)}, mesh_of_one())
  np.testing.assert_array_equal(state["p"], [2.0, 2.0])
  s = run(tmp_path, [0.5, 0.7, 0.7, 0.6, 0.9], best_over="all").summary()
  assert (s["best_epoch"], s["best_test_accuracy"]) == (5, 0.9)
  one = run(tmp_path, [0.4]).summary()  # one epoch: nothing before the last to select
  assert one["headline"] == "last" and one["best_test_accuracy"] is None


def mesh_of_one():
  import jax
  return jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])


def test_state_survives_a_resume_cut_at_the_checkpoint(tmp_path):
  sel = run(tmp_path, [0.5, 0.8, 0.6])
  sel.save()
  sel.accuracy_fn = lambda t: 0.95
  sel.update(4, {"p": jnp.full((2,), 4.0)})  # after the checkpoint: lost on resume
  back = ts.TestSelection(tmp_path, lambda t: 0.0, 5)
  back.restore(3, {"p": jnp.zeros(2)})
  assert back.accuracies == [0.5, 0.8, 0.6] and back.best_epoch == 2
  np.testing.assert_array_equal(back.best_state[0], [2.0, 2.0])
  back.restore(1, {"p": jnp.zeros(2)})  # a checkpoint before the best epoch
  assert back.accuracies == [0.5] and back.best_epoch is None


def config(**eval_kw):
  return ml_collections.ConfigDict(dict(
      eval=dict(select="best_test", best_over="logged", **eval_kw),
      data=dict(setting="few_shot"), train=dict(early_stopping_patience=0)))


def test_errors_name_the_key():
  ts.check(config(), "multiclass", True)
  with pytest.raises(ValueError, match="eval.select='best'"):
    ts.check(ml_collections.ConfigDict(dict(eval=dict(select="best"))), "multiclass", True)
  with pytest.raises(ValueError, match="multilabel"):
    ts.check(config(), "multilabel", True)
  with pytest.raises(ValueError, match="gradient training"):
    ts.check(config(), "multiclass", False)
  c = config()
  c.train.early_stopping_patience = 3
  with pytest.raises(ValueError, match="early_stopping_patience"):
    ts.check(c, "multiclass", True)


def test_report_says_which_selection_produced_each_number():
  best = {"method": "biomedvr", "selection": run_summary()}
  assert report.method_label(best) == "biomedvr [best test epoch]"
  assert report.method_label({"method": "coop"}) == "coop"
  text = report.selection_markdown(best)
  assert "best test epoch" in text and "epoch 2" in text and "70.00%" in text
  assert "last epoch (3): 60.00%" in text
  last = {"method": "ar", "selection": ts.last_summary(0.55, 200)}
  assert report.method_label(last) == "ar"
  assert "**last epoch** (eval.select=last): test accuracy 55.00%" in \
      report.selection_markdown(last)


def run_summary():
  it = iter([0.5, 0.7, 0.6])
  sel = ts.TestSelection(".", lambda t: next(it), 3)
  for e in (1, 2, 3):
    sel.update(e, {"p": jnp.zeros(1)})
  return sel.summary()


def test_best_test_on_a_features_method_evaluates_features(tmp_path):
  """The crash of issue 20: ``eval.select=best_test`` on CoOp (a features method) handed images
  to ``CoOp.logits``. The per-epoch accuracy is the run's own test evaluation (Run.logits), so
  the best epoch's number equals the test accuracy the run reports for the state it selected."""
  from biomedjax.train import loop
  from configs import coop
  cfg = coop.get_config("dataset=synthetic,shots=2,runlocal")
  cfg.model.preset = "tiny"
  cfg.eval.select, cfg.eval.best_over = "best_test", "all"
  cfg.eval.temperature, cfg.eval.reliability = "none", "none"  # not what this test is about
  cfg.data.synthetic.per_class = 6
  cfg.train.progress = False
  results = loop.train_and_evaluate(cfg, tmp_path)
  s = results["selection"]
  assert len(s["test_accuracy_per_epoch"]) == 2 and s["headline"] == "best_test"
  assert s["best_test_accuracy"] == pytest.approx(results["test"]["accuracy"])
