"""BioMedVR's study around the methods: the ablation switches, the tfds source, the cost record.

* Each named ablation (``configs/biomedvr_ablations.py``) changes only its part: the sentences of
  each head, the programs' and the gate's initial values, the positive and negative experts'
  logits and the loss terms are compared with the canonical run's, on the tiny backbone and
  synthetic attribute files laid out as the released ablation folders (whose layout is checked
  on the released files themselves, ``shared_dir``).
* tensorflow-datasets: tfds's label names mapped by the reference loaders' rules equal the class
  names in label order of the released attribute files (which the reference generated from its
  datasets' ``classnames``), and a run's data is built offline from ``tfds.testing.mock_data``.
* The cost tracker's record and the report's cost table on hand-made results.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from biomedjax.evaluation import report_cost
from biomedjax.methods import METHODS, attributes, biomedvr
from biomedjax.methods.base import Task
from biomedjax.train import cost as cost_lib
from configs import biomedvr_ablations
from tests import tiny_backbone, vr_attributes

CLASSES = tiny_backbone.CLASSNAMES


@pytest.fixture(scope="module")
def ablation_dirs(tmp_path_factory):
  """(attributes_dir, ablations_dir): canonical files and the ablation tree, all synthetic; the
  replacements hold another number of sentences per class than the canonical ones."""
  root = tmp_path_factory.mktemp("ablation_files")
  base = vr_attributes.write(root / "attributes", "btmri", CLASSES)
  abl = root / "ablations"
  for r in ("0.25", "0.50", "0.75"):
    vr_attributes.write(abl / f"attributes_corrupted/poscorrupt_r{r}_full", "btmri", CLASSES,
                        heads=("dist", "des"), per_class=7)  # other forms, 7 per class
  for i, v in enumerate(("random", "shuffled")):
    vr_attributes.write(abl / f"attributes_neg_variants/neg_{v}", "btmri", CLASSES,
                        heads=(v,), per_class=6 + i)
  return base, abl


BATCH = {"image": jax.random.uniform(jax.random.key(3), (2, 192, 192, 3)),
         "label": jnp.array([0, 2])}
PROGRAMS = {"program_pos": jax.random.normal(jax.random.key(1), (3, 224, 224)),
            "program_neg": jax.random.normal(jax.random.key(2), (3, 224, 224))}


@pytest.fixture(scope="module")
def features(tiny, ablation_dirs):
  """(δ+, δ−) image features of the batch: no switch touches the programs or the tower (the
  ``programs`` part checks their init), so the tower runs once for all the switches."""
  backbone, params = tiny
  c = biomedvr_ablations.get_config("dataset=btmri,shots=16")
  c.method.attributes_dir = str(ablation_dirs[0])
  m = METHODS["biomedvr"].build(backbone, Task(CLASSES), c.method)
  return jax.jit(m.image_features)(PROGRAMS, {"backbone": params}, BATCH["image"])


def _parts(name, backbone, params, dirs, features):
  base, abl = dirs
  c = biomedvr_ablations.get_config(f"dataset=btmri,shots=16,ablation={name},ablations_dir={abl}")
  c.method.attributes_dir = str(base)
  m = METHODS["biomedvr"].build(backbone, Task(CLASSES), c.method)
  m.image_features = lambda trainable, frozen, images: features
  frozen = {"backbone": params, **m.prepare(params)}
  trainable = {**m.init(jax.random.key(0), frozen), **PROGRAMS}
  batch = BATCH
  pos, neg, w = m.experts(trainable, frozen, batch["image"])
  loss, metrics = m.loss(trainable, frozen, batch, jax.random.key(4))
  return {"des": m.sentences["des"], "dist": m.sentences["dist"],
          "confuse": m.sentences.get("confuse"),
          "programs": [np.asarray(m.init(jax.random.key(0), frozen)[p]) for p in m.program_names],
          "gate": jax.tree.map(np.asarray, trainable.get("gate")),
          "pos": np.asarray(pos), "neg": np.asarray(neg), "w": np.asarray(w),
          "ce": float(metrics["ce"]), "cs": float(metrics["cs"]), "loss": float(loss),
          "beta": m.opts.beta}


def _same(a, b) -> bool:
  try:
    jax.tree.map(np.testing.assert_array_equal, a, b)
    return True
  except (AssertionError, ValueError, TypeError):
    return False


LOSS = {"ce", "cs", "loss"}  # computed from the fused logits: may follow any change of them
# switch -> (the parts it names, which must change; the parts that may change with them).
# Everything else must stay bit-identical.
CHANGES = {
    "pos_corrupt_r0.25": ({"des", "dist", "pos"}, LOSS),
    "pos_corrupt_r0.75_nocs": ({"des", "dist", "pos", "beta"}, LOSS),
    "neg_random": ({"confuse", "neg"}, LOSS),
    "neg_shuffled": ({"confuse", "neg"}, LOSS),
    "no_cs": ({"beta"}, {"loss"}),
    "no_neg": ({"confuse", "neg"}, LOSS),
    "gate_per_class": ({"gate", "w"}, set()),  # its init: (½, ½) for every class, same fusion
    "gate_per_sample": ({"gate", "w"}, LOSS),
    "gate_fixed": ({"gate"}, set()),           # w = (½, ½) = softmax of the canonical (1, 1)
}


@pytest.fixture(scope="module")
def canonical(tiny, ablation_dirs, features):
  return _parts("none", *tiny, ablation_dirs, features)


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_each_ablation_changes_only_its_part(tiny, ablation_dirs, features, canonical, name):
  got = _parts(name, *tiny, ablation_dirs, features)
  changed = {k for k in canonical if not _same(canonical[k], got[k])}
  named, consequences = CHANGES[name]
  assert named <= changed <= named | consequences, (name, changed)
  if name in ("no_cs", "pos_corrupt_r0.75_nocs"):
    assert got["beta"] == 0.0 and got["loss"] == pytest.approx(got["ce"], abs=1e-6)
  if name == "no_neg":  # the reference without a confusion file: zero logits, CS on them
    assert got["confuse"] is None and not got["neg"].any()
    true = (got["w"][0] * got["pos"])[np.arange(2), [0, 2]]
    assert got["cs"] == pytest.approx(float(np.maximum(0.5 - true, 0).mean()), rel=1e-5)


def test_parameter_counts_of_the_switches(tiny, ablation_dirs):
  backbone, params = tiny
  counts = {}
  for name in ("none", "no_neg", "gate_fixed"):
    c = biomedvr_ablations.get_config(f"dataset=btmri,ablation={name},"
                                      f"ablations_dir={ablation_dirs[1]}")
    c.method.attributes_dir = str(ablation_dirs[0])
    m = METHODS["biomedvr"].build(backbone, Task(CLASSES), c.method)
    counts[name] = m.parameter_counts(jax.eval_shape(m.init, jax.random.key(0), None))
  assert counts["none"] == {"stored": 301_058, "effective": 79_874}
  assert counts["no_neg"] == {"stored": 301_058, "effective": 39_938}  # δ− gets no gradient
  assert counts["gate_fixed"] == {"stored": 301_056, "effective": 79_872}


def test_ablation_recipe_names_and_errors():
  pts = []
  biomedvr_ablations.sweep(lambda **k: pts.append(k["arg"]), "ablations_dir=/abl")
  assert len(pts) == 2 * len(biomedvr_ablations.ABLATIONS)
  without_files = []
  biomedvr_ablations.sweep(lambda **k: without_files.append(k["arg"]), None)
  assert len(without_files) == 2 * 6 and not any("pos_corrupt" in p for p in without_files)
  c = biomedvr_ablations.get_config("dataset=busi,ablation=neg_shuffled,ablations_dir=/abl")
  assert (c.method.negative, c.method.neg_attributes_dir, c.variant) == (
      "shuffled", "/abl/attributes_neg_variants/neg_shuffled", "ablation=neg_shuffled")
  assert biomedvr_ablations.get_config("dataset=busi").variant == ""
  with pytest.raises(ValueError, match="add ablations_dir="):
    biomedvr_ablations.get_config("dataset=busi,ablation=pos_corrupt_r0.50")
  with pytest.raises(ValueError, match="ablation='nope'"):
    biomedvr_ablations.get_config("dataset=busi,ablation=nope")


def test_released_ablation_files_have_the_layout_the_switches_read(shared_dir):
  abl = shared_dir / "data" / "biomedvr" / "ablations"
  if not abl.is_dir():
    pytest.skip(f"no released ablation files under {abl}")
  from biomedjax.data import catalog
  for key in biomedvr_ablations.SWEEP_DATASETS:
    classes = catalog.DATASETS[key].classnames
    for r in ("0.25", "0.50", "0.75"):
      for head in ("des", "dist"):
        assert len(attributes.load(abl / f"attributes_corrupted/poscorrupt_r{r}_full", key,
                                   head, classes)) == len(classes)
    for v in ("random", "shuffled"):
      assert len(attributes.load(abl / f"attributes_neg_variants/neg_{v}", key, v,
                                 classes)) == len(classes)


# --- tensorflow-datasets -------------------------------------------------------------------------

def test_tfds_labels_map_to_the_reference_class_names(shared_dir):
  tfds = pytest.importorskip("tensorflow_datasets")
  from biomedjax.data import tfds_source
  attrs = shared_dir / "data" / "biomedvr" / "attributes"
  with tfds.testing.mock_data(num_examples=1, policy=tfds.testing.MockPolicy.USE_CODE):
    for key, name in tfds_source.TFDS_NAMES.items():
      names = tfds.builder(name).info.features["label"].names
      ref, label_map = tfds_source.reference_classes(key, names)
      assert ref == list(json.loads((attrs / f"{key}_des.json").read_text())), key
      assert sorted(label_map.values()) == list(range(len(ref)))
  dropped = set(range(102)) - set(tfds_source.reference_classes("caltech101", [
      n for n in tfds_source.CALTECH_IGNORED + tuple(f"c{i}" for i in range(100))])[1])
  assert dropped == {0, 1} | set(range(102, 102))  # background_google, faces_easy


def test_tfds_source_builds_a_run_from_mock_data(tmp_path):
  tfds = pytest.importorskip("tensorflow_datasets")
  from biomedjax.data import transforms
  from biomedjax.train import setup
  from configs import attrvr as attrvr_config
  c = attrvr_config.get_config("dataset=eurosat,shots=2,seed=3")
  c.data.source = "tfds"
  with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
    data = setup.build_data(c.data, c.seed, tmp_path)
    assert data.classnames[:2] == ("Annual Crop Land", "Forest")
    train = data.splits["train"]
    per_class = {}
    for i in range(len(train)):
      r = train[i]
      transforms.decode(r["image"], r["path"])  # encoded as the pipeline decodes
      per_class[r["label"]] = per_class.get(r["label"], 0) + 1
      assert r["path"].startswith("train[:80%][")
    assert set(per_class.values()) <= {1, 2}  # K = 2 of each label present
    assert len(data.splits["test"]) == 40  # the whole test split (mock data: 40 per split)
  assert data.source["kind"] == "tfds" and "NOT the paper's" in data.source["note"]
  selection = json.loads((tmp_path / "fewshot_selection.json").read_text())
  assert selection["seed"] == 1 and selection["split_file"] == "tfds:eurosat/rgb"
  from biomedjax.data import tfds_source
  note = tfds_source.report_note([{"dataset": "eurosat", "data_source": data.source}])
  assert "not the paper's" in note and "eurosat (tfds eurosat/rgb)" in note


# --- training cost -------------------------------------------------------------------------------

def test_cost_tracker_times_epochs_and_evaluation():
  clock = iter([0.0, 1.0, 3.0, 3.5, 4.5])
  t = cost_lib.CostTracker(steps_per_epoch=2, images_per_epoch=10, clock=lambda: next(clock))
  t.begin()                        # 0.0
  for done in (1, 2, 3, 4):
    t.after_step(done, jnp.zeros(()))
    t.after_epoch_work(done)
  s = t.summary({"stored": 5, "effective": 3})
  # perf_counter reads: begin 0.0; epoch 1 ends 1.0, eval to 3.0; epoch 2 ends 3.5, eval to 4.5
  assert s["epoch_seconds"] == [1.0, 0.5] and s["eval_seconds"] == 3.0
  assert s["train_seconds"] == 1.5 and s["wall_seconds"] == 4.5
  assert s["images_per_second"] == pytest.approx(20 / 1.5, abs=1e-3)
  assert s["images_per_second_after_first_epoch"] == 20.0
  assert s["peak_memory_bytes"] > 0 and s["memory_source"] in ("device", "host_rss")


def test_cost_table_is_one_row_per_method():
  def run(method, stored, epochs, peak):
    return {"method": method, "cost": {
        "trainable_parameters": {"stored": stored, "effective": stored // 2},
        "epoch_seconds": epochs, "train_seconds": sum(epochs), "images_per_second": 1.0,
        "images_per_second_after_first_epoch": 64 / epochs[-1],
        "peak_memory_bytes": peak, "memory_source": "device"}}
  runs = [run("attrvr", 150_528, [9.0, 2.0, 2.0], 2 * 2 ** 20),
          run("attrvr", 150_528, [9.0, 4.0, 4.0], 4 * 2 ** 20),
          run("biomedvr", 301_058, [9.0, 4.0], 8 * 2 ** 20), {"method": "vp"}]
  text = report_cost.cost_table(runs)
  rows = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
          for line in text.splitlines() if line.startswith("| ") and "method" not in line}
  assert rows["attrvr"] == ["attrvr", "150,528", "75,264", "3.000", "15.0", "24.0", "3",
                            "device", "2"]
  assert rows["biomedvr"][1:4] == ["301,058", "150,529", "4.000"] and rows["biomedvr"][6] == "8"
  assert "1 run(s) recorded no cost" in text
  assert report_cost.cost_table([{"method": "vp"}]) == ""
