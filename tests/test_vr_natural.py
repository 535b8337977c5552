"""The natural-image benchmarks of BioMedVR in CoOp's layout, the few-shot seed quirk, the cost
table.

Each dataset gets a synthetic tree built here exactly as the reference's loaders read it
(JXLiu-AI/BioMedVR ``datasets/<name>.py``): ``<root>/<dir>/<image dir>/...`` plus the split file
written as ``OxfordPets.save_split`` -> ``write_json`` writes it (``{"train"|"val"|"test":
[[impath, label, classname], ...]}``, indent 4, separators ", "/": "), one image per class and
split, class names in label order = the keys of the released attribute files (which the reference
generated from ``dataset.classnames``). AttrVR then runs ``runlocal`` (2 epochs) in this process
on the tiny CLIP preset with the released ``<key>_{des,dist}.json`` for each of the paper's seven
datasets; the report of that sweep shows the cost table beside the accuracy table. The tfds
source trains through the launcher on ``tfds.testing.mock_data``.
"""

import collections
import json
import os
import pathlib
import random

import numpy as np
import pytest
from PIL import Image

from biomedjax.data import catalog, natural
from biomedjax.data import splits as splits_lib
from biomedjax.train import setup
from configs import attrvr as attrvr_config
from configs import biomedvr as biomedvr_config


def _attribute_classes(attributes, key):
  return list(json.loads((attributes / f"{key}_des.json").read_text()))


def _image_path(key, label, split):
  if key in ("oxford_pets", "oxford_flowers"):  # flat folders (image_00001.jpg, Abyssinian_1.jpg)
    return f"image_{label:03d}_{split}.jpg"
  if key == "stanford_cars":                    # relative to the dataset folder
    return f"cars_{split}/{label:05d}.jpg"
  if key == "fgvc":                             # images/<id>.jpg, the id a number
    return f"{label:04d}{split}.jpg"
  return f"class_{label:03d}/{split}_{label}.jpg"


def write_coop_tree(root, key, classnames, jpeg: bytes):
  """The dataset's folder, images and split file in CoOp's layout (see the module doc); for
  FGVC-Aircraft CoOp's lists instead (``fgvc_aircraft.py``: ``variants.txt``,
  ``images_variant_<split>.txt`` lines ``<id> <variant>``, images ``images/<id>.jpg``)."""
  info = natural.DATASETS[key]
  split = {s: [[_image_path(key, y, s), y, c] for y, c in enumerate(classnames)]
           for s in ("train", "val", "test")}
  image_root = info.image_root(root)
  for entries in split.values():
    for rel, _, _ in entries:
      (image_root / rel).parent.mkdir(parents=True, exist_ok=True)
      (image_root / rel).write_bytes(jpeg)
  if key != "fgvc":
    info.split_file(root).write_text(json.dumps(split, indent=4, separators=(",", ": ")))
    return
  info.split_file(root).write_text("".join(f"{c}\n" for c in classnames))
  for s, entries in split.items():
    (root / info.dir_name / f"images_variant_{s}.txt").write_text(
        "".join(f"{rel[:-len('.jpg')]} {c}\n" for rel, _, c in entries))


@pytest.fixture(scope="module")
def coop_root(shared_dir, tmp_path_factory):
  attributes = shared_dir / "data" / "biomedvr" / "attributes"
  if not all((attributes / f"{k}_des.json").exists() for k in natural.DATASETS):
    pytest.skip(f"no released natural-image attribute files under {attributes}")
  root = tmp_path_factory.mktemp("coop")
  buf = __import__("io").BytesIO()
  Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 12, 3), np.uint8)).save(
      buf, "JPEG")
  classes = {k: _attribute_classes(attributes, k) for k in natural.DATASETS}
  for key in natural.DATASETS:
    write_coop_tree(root, key, classes[key], buf.getvalue())
  return root, attributes, classes


@pytest.mark.parametrize("key", sorted(natural.DATASETS))
def test_each_dataset_reads_its_coop_tree(coop_root, key, tmp_path):
  root, _, classes = coop_root
  info = catalog.lookup(key)
  assert info is natural.DATASETS[key] and info.num_classes == len(classes[key])
  c = attrvr_config.get_config(f"dataset={key},shots=1,seed=1,root={root}")
  data = setup.build_data(c.data, c.seed, tmp_path)
  assert data.classnames == tuple(classes[key])  # the split file's names, in label order
  assert len(data.splits["train"]) == len(data.splits["test"]) == len(classes[key])
  written = tmp_path / "split_fgvc_aircraft.json"  # FGVC's lists, as the run's split file
  assert data.split_file == str(written if key == "fgvc" else info.split_file(root))
  first = data.splits["test"][0]["path"]
  assert first.startswith(str(info.image_root(root) / _image_path(key, 0, "test")))


def test_wrong_class_count_is_one_error(coop_root, tmp_path):
  root, _, classes = coop_root
  bad = tmp_path / "root"
  write_coop_tree(bad, "eurosat", classes["eurosat"][:9], b"")  # 9 of EuroSAT's 10 classes
  c = attrvr_config.get_config(f"dataset=eurosat,shots=1,seed=1,root={bad}")
  c.data.skip_bad_images = True
  with pytest.raises(ValueError, match=r"split_zhou_EuroSAT.json: 9 classes in 'train' but "
                                       r"EuroSAT has 10"):
    setup.build_data(c.data, c.seed, tmp_path)


def reference_fewshot(train, val, num_shots, run_seed):
  """JXLiu-AI/BioMedVR as its experiment scripts run it: ``set_seed(args.seed)`` (tools.py:10-14)
  then ``build_dataset(name, root, shot, seed=0)`` whose ``generate_fewshot_dataset``
  (datasets/utils.py) draws with the global ``random``; the seed=0 only names the cache file."""
  random.seed(run_seed)

  def generate(data_source, k):
    tracker = collections.defaultdict(list)
    for item in data_source:
      tracker[item[1]].append(item)
    out = []
    for _, items in tracker.items():
      out.extend(random.sample(items, k) if len(items) >= k else items)
    return out
  return generate(train, num_shots), generate(val, min(num_shots, 4))


def test_every_run_seed_trains_on_the_first_runs_draw(tmp_path):
  # A 3-class tree with 6 train / 5 val images per class in CoOp's DTD layout.
  names = ["banded", "blotchy", "braided"]
  split = {s: [[f"{c}/{s}_{i}.jpg", y, c] for y, c in enumerate(names) for i in range(n)]
           for s, n in (("train", 6), ("val", 5), ("test", 1))}
  info = natural.DATASETS["dtd"]
  info.split_file(tmp_path).parent.mkdir(parents=True)
  info.split_file(tmp_path).write_text(json.dumps(split, indent=4))
  c = attrvr_config.get_config(f"dataset=dtd,shots=2,seed=3,root={tmp_path}")
  assert c.data.split_seed == 1  # the seed-1 draw for seeds 1, 2, 3 (configs/_vr.py)
  items = splits_lib.read_split_file(info.split_file(tmp_path))
  from biomedjax.data import fewshot
  ours = fewshot.fewshot_splits(items, 2, c.data.split_seed)
  tuples = {s: [tuple(e) for e in split[s]] for s in split}
  ref_train, ref_val = reference_fewshot(tuples["train"], tuples["val"], 2, run_seed=1)
  assert [(it.path, it.label) for it in ours["train"]] == [e[:2] for e in ref_train]
  assert [(it.path, it.label) for it in ours["val"]] == [e[:2] for e in ref_val]
  # split_seed=0: each run its own draw (the seed-3 one here).
  own = fewshot.fewshot_splits(items, 2, 3)
  assert [it.path for it in own["train"]] == [e[0] for e in reference_fewshot(
      tuples["train"], tuples["val"], 2, run_seed=3)[0]]


def test_biomedvr_on_natural_datasets_zeroes_the_negative_expert():
  # The reference has no <key>_confuse.json for them (experiments/biomedvr.py:146-151,190-196).
  assert biomedvr_config.get_config("dataset=food101").method.negative == "zeros"
  assert biomedvr_config.get_config("dataset=busi").method.negative == "confuse"


@pytest.fixture(scope="module")
def clip_bpe(tmp_path_factory):
  """OpenAI CLIP's BPE (open_clip's file) as a tokenizer folder for the tiny random weights: the
  generated vocabulary of random presets cannot hold the ~1,000-3,000 words of a natural
  dataset's attribute files whole (sentences would overflow the 77-token context)."""
  import importlib.util
  spec = importlib.util.find_spec("open_clip")
  gz = spec and pathlib.Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
  if not gz or not gz.is_file():
    pytest.skip("open_clip's bpe_simple_vocab_16e6.txt.gz is absent (requirements-dev.txt)")
  from biomedjax.models import bpe
  return bpe.write_openclip_vocab(gz, tmp_path_factory.mktemp("clip_bpe"))


# The suite runs two of the seven (each dataset compiles its own program: all seven take ~7.5 min
# of the suite on 2 cores); BIOMEDJAX_ALL_NATURAL=1 runs all of them.
SWEPT = (natural.PAPER_DATASETS if os.environ.get("BIOMEDJAX_ALL_NATURAL")
         else ("eurosat", "dtd"))


@pytest.fixture(scope="module")
def sweep(coop_root, clip_bpe, tmp_path_factory):
  """AttrVR runlocal on the paper's natural datasets (``SWEPT``), in this process; workdirs by
  dataset."""
  from biomedjax.train import loop
  root, attributes, _ = coop_root
  out = tmp_path_factory.mktemp("sweep")
  runs = {}
  for key in SWEPT:
    c = attrvr_config.get_config(f"dataset={key},shots=1,seed=1,runlocal=True,root={root}")
    c.model.preset = "tiny_clip"
    c.model.tokenizer = str(clip_bpe)
    c.method.attributes_dir = str(attributes)
    c.data.batch_size = 128  # one step per epoch (at most 102 images)
    c.data.test_batch_size = 128
    c.train.progress = False
    runs[key] = (out / key, loop.train_and_evaluate(c, out / key))
  return out, runs


# ~30-60 s of CPU per dataset (compilation for its class count; several minutes on a busy box):
# marked slow like the other VR end-to-end runs (`-m slow` runs them).
@pytest.mark.slow
def test_attrvr_runlocal_on_each_natural_dataset(sweep, coop_root):
  _, classes = coop_root[1:]
  _, runs = sweep
  for key, (workdir, results) in runs.items():
    assert results["dataset"] == key and results["method"] == "attrvr"
    assert results["test"]["num_examples"] == len(classes[key])
    assert len(results["selection"]["test_accuracy_per_epoch"]) == 2
    cost = results["cost"]
    assert cost["trainable_parameters"] == {"stored": 150_528, "effective": 39_936}
    assert cost["epochs_timed"] == 2 and len(cost["epoch_seconds"]) == 2
    assert cost["images_per_epoch"] == len(classes[key])
    assert cost["peak_memory_bytes"] > 0 and cost["memory_source"] in ("device", "host_rss")
    assert json.loads((workdir / "results.json").read_text())["cost"] == cost


@pytest.mark.slow
def test_report_of_the_sweep_has_the_cost_table(sweep):
  from biomedjax import report
  out, runs = sweep
  text = report.make_report([str(w) for w, _ in runs.values()], out / "report")
  print(text)
  assert "## Training cost per method" in text
  table = text.split("## Training cost per method", 1)[1]
  row = next(line for line in table.splitlines() if line.startswith("| attrvr"))
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells[1:3] == ["150,528", "39,936"] and cells[-1] == str(len(SWEPT))


@pytest.mark.slow
def test_tfds_source_trains_through_the_launcher(coop_root, clip_bpe, tmp_path, monkeypatch,
                                                 caplog):
  """``--config.data.source=tfds`` end to end: ``launch.cli`` in this process (mock_data patches
  tfds in-process), AttrVR runlocal on EuroSAT from tfds's mock records with the released
  attribute files; results.json and the report say the split is tfds's."""
  tfds = pytest.importorskip("tensorflow_datasets")
  import launch
  from biomedjax import report
  attributes = coop_root[1]
  workdir = tmp_path / "run"
  monkeypatch.setattr("sys.argv", [
      launch.__file__, f"--config={pathlib.Path(launch.__file__).parent}/configs/attrvr.py:"
      "dataset=eurosat,shots=1,seed=1,runlocal=True", "--config.data.source=tfds",
      "--config.model.preset=tiny_clip", f"--config.model.tokenizer={clip_bpe}",
      f"--config.method.attributes_dir={attributes}", "--config.data.batch_size=128",
      "--config.data.test_batch_size=128", "--config.train.progress=False",
      f"--workdir={workdir}", "--debug"])
  try:
    with tfds.testing.mock_data(num_examples=30, policy=tfds.testing.MockPolicy.USE_CODE):
      with pytest.raises(SystemExit) as exit_:
        launch.cli()
  finally:
    launch.FLAGS.unparse_flags()
  assert "reading the tfds records of 'eurosat' ..." in caplog.text  # no split file to read
  assert exit_.value.code in (None, 0)  # absl.app.run: sys.exit(main(argv)), main returns None
  results = json.loads((workdir / "results.json").read_text())
  assert results["method"] == "attrvr" and results["dataset"] == "eurosat"
  assert results["data_source"]["kind"] == "tfds"
  assert results["data_source"]["tfds_name"] == "eurosat/rgb"
  assert "NOT the paper's" in results["data_source"]["note"]
  assert results["test"]["num_examples"] == 30  # tfds's "train[80%:]" (mock: 30 records)
  assert len(results["selection"]["test_accuracy_per_epoch"]) == 2  # trained: runlocal's 2 epochs
  text = report.make_report([str(workdir)], tmp_path / "report")
  assert "Split: tensorflow-datasets', not the paper's** for eurosat (tfds eurosat/rgb)" in text
