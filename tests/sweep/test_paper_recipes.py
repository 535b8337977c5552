"""Paper recipes (configs/paper/) against the published tables, and --sweep=plan/count/array.

The expected runs per cell come from the papers' protocols as their sources state them
(BiomedCoOp README: 11 datasets, 3 seeds; base-to-novel: no BUSI config in the release;
BioMedVR: bashatt-bio.sh runs train.py's default seed 1 at 16 shots; CalibPrompt: 8 shots,
seed 1), and the cells from the published CSVs: every cell has exactly its runs, nothing extra.
"""

import collections
import json
import os
import pathlib
import subprocess
import sys

import pytest

from biomedjax import published
from biomedjax.sweep import array, plan
from configs.paper import (biomedcoop_base2novel, biomedcoop_fewshot, biomedvr_16shot,
                           calibprompt_ece, iuxray)

REPO = pathlib.Path(__file__).resolve().parents[2]
ELEVEN = ("btmri", "busi", "chmnist", "covid_19", "ctkidney", "dermamnist", "kneexray", "kvasir",
          "lungcolon", "octmnist", "retina")


def _by_cell(runs):
  cells = collections.defaultdict(list)
  for r in runs:
    cells[r.cell].append(r.values)
  return cells


def _key(v):
  return (v["method"], v.get("dataset"), v.get("shots"), v.get("seed"), v.get("setting"))


def test_fewshot_recipe_is_the_published_table():
  cells = _by_cell(biomedcoop_fewshot.runs())
  table = {(r["method"], r["shots"]) for r in published.load("biomedcoop_fewshot")}
  assert set(cells) == table and len(table) == 50
  for (name, k), runs in cells.items():
    expected = {(published.METHOD_KEYS[name], d, int(k), s, None) for d in ELEVEN
                for s in (1, 2, 3)}
    assert sorted(map(_key, runs)) == sorted(expected), (name, k)
  assert not biomedcoop_fewshot.unrunnable()


def test_base2novel_recipe_is_the_published_table():
  cells = _by_cell(biomedcoop_base2novel.runs())
  assert set(cells) == {(r["method"],) for r in published.load("biomedcoop_base2novel")}
  ten = [d for d in ELEVEN if d != "busi"]
  for (name,), runs in cells.items():
    method = published.METHOD_KEYS[name]
    if method == "zeroshot":  # one run per dataset: it uses no training image
      expected = {(method, d, 0, 1, "base2novel") for d in ten}
    else:
      expected = {(method, d, 16, s, "base2novel") for d in ten for s in (1, 2, 3)}
    assert sorted(map(_key, runs)) == sorted(expected), name


def test_biomedvr_recipe_is_the_published_table():
  cells = _by_cell(biomedvr_16shot.runs())
  table = {(r["method"], r["key"]) for r in published.load("biomedvr_16shot")
           if r["key"] != "average"}
  assert set(cells) == table and len(table) == 77
  for (name, key), runs in cells.items():
    assert list(map(_key, runs)) == [(published.METHOD_KEYS[name], key, 16, 1, None)]


def test_calibprompt_recipe_is_the_published_table_and_names_what_cannot_run():
  runs = calibprompt_ece.runs()
  cells = _by_cell(runs)
  table = {(r["backbone"], r["dataset"], r["objective"]) for r in published.load("calibprompt_ece")}
  assert set(cells) == table and len(table) == 20
  for (bb, ds, obj), values in cells.items():
    assert len(values) == 1
    v = values[0]
    assert (v["backbone"], v["dataset"], v["shots"], v["seed"]) == (
        published.BACKBONE_KEYS[bb], published.CALIBPROMPT_DATASET_KEYS[ds], 8, 1)
    assert v["objective"] == {"CE": "ce", "CalibPrompt": "calibprompt"}[obj]
  blocked = {r.cell[:2]: r.blocked for r in runs if r.blocked}
  # BiomedCLIP on COVID / RSNA18 runs today; every other pair is listed with its reason
  assert ("BioMedCLIP", "COVID") not in blocked and ("BioMedCLIP", "RSNA18") not in blocked
  assert all(why for why in blocked.values())
  points = []
  calibprompt_ece.sweep(lambda **kw: points.append(kw["arg"]))
  assert len(points) + len(calibprompt_ece.unrunnable()) == 20


def test_iuxray_recipe_is_the_published_table():
  cells = _by_cell(iuxray.runs())
  assert set(cells) == {(r["setting"],) for r in published.load("iuxray_table1")}


def test_recipe_points_build_each_methods_reference_config():
  """One point per method builds configs/<method>.py's config with the table's settings."""
  c = biomedcoop_fewshot.get_config("method=biomedcoop,dataset=busi,shots=4,seed=2,prompts=p.json")
  assert (c.method.name, c.method.lambda_sccm, c.method.lambda_kdsp, c.seed) == (
      "biomedcoop", 0.75, 0.75, 2)  # configs/biomedcoop.py FEW_SHOT["busi"]
  assert c.data.llm_prompts == "p.json"
  assert biomedcoop_fewshot.get_config("method=linear_probe,dataset=btmri,shots=1,seed=1,"
                                       "prompts=p.json").data.llm_prompts == ""
  c = biomedcoop_base2novel.get_config("method=kgcoop,dataset=btmri,shots=16,seed=1,"
                                       "setting=base2novel")
  from configs import kgcoop
  assert (c.data.setting, c.optim.epochs, c.method.w) == (
      "base2novel", kgcoop.BASE2NOVEL["epochs"], kgcoop.BASE2NOVEL["w"])
  c = biomedvr_16shot.get_config("method=cocoop,dataset=retina,shots=16,seed=1")
  assert c.model.preset == "clip_vit_b16" and c.method.name == "cocoop"
  c = biomedvr_16shot.get_config("method=biomedvr,dataset=kneexray,shots=16,seed=1,attributes=a")
  assert (c.method.attributes_dir, c.eval.select) == ("a", "best_test")
  ce = calibprompt_ece.get_config("method=calibprompt,backbone=biomedclip,dataset=covid,shots=8,"
                                  "seed=1,objective=ce")
  cp = calibprompt_ece.get_config("method=calibprompt,backbone=biomedclip,dataset=covid,shots=8,"
                                  "seed=1,objective=calibprompt")
  assert (ce.loss.label_smoothing, ce.loss.terms) == (0.0, "")
  assert (cp.loss.label_smoothing, cp.loss.terms) == (0.1, "smac:1.0,as:3.0")  # README table
  assert ce.variant != cp.variant
  # the command's own config (no method=): the first point it names, a sweep to run
  c = biomedvr_16shot.get_config("methods=vp,datasets=busi,root=/d")
  assert (c.method.name, c.data.dataset, c.data.root, c.run_sweep, c.pack) == (
      "vp", "busi", "/d", True, True)


def _launch(*args, env=None):
  return subprocess.run([sys.executable, str(REPO / "launch.py"), *args], cwd=REPO,
                        capture_output=True, text=True, timeout=600,
                        env={**os.environ, **(env or {})})


def test_plan_on_an_empty_root_lists_every_dataset_and_exits_nonzero(tmp_path):
  r = _launch(f"--config={REPO}/configs/paper/biomedcoop_fewshot.py:methods=coop+biomedcoop,"
              f"shots=16,seeds=1,root={tmp_path}/empty", f"--workdir={tmp_path}/w", "--sweep=plan")
  assert r.returncode == 1, r.stderr[-2000:]
  out = r.stdout
  assert "runs: 22 runnable, 0 finished" in out
  for d in ELEVEN:
    assert f"MISSING  dataset {d} (images)" in out and f"MISSING  dataset {d} (split file)" in out
  assert "MISSING  prompt-ensemble file" in out
  # by hand: 100 epochs x sum over the 11 datasets of floor(16 C / batch); the class counts C are
  # 4 3 8 4 4 7 5 8 5 4 4 (sum 56): CoOp batch 32 -> 26 steps per epoch, BiomedCoOp batch 4 -> 224
  assert "coop: 2600 steps" in out and "biomedcoop: 22400 steps" in out
  assert "status: 23 required item(s) missing" in out


def _sample_root(shared_dir, tmp_path):
  root = tmp_path / "root"
  for name in ("BTMRI", "BUSI"):
    (root / name).mkdir(parents=True)
    (root / name / name).symlink_to(shared_dir / "data" / "images" / name / "images")
    (root / name / f"split_{name}.json").symlink_to(
        shared_dir / "data" / "images" / name / f"split_{name}.json")
  return root


def test_plan_lists_the_real_samples_as_present(shared_dir, tmp_path):
  root = _sample_root(shared_dir, tmp_path)
  arg = f"methods=coop+tip_adapter_f,datasets=btmri+busi,shots=1,root={root}"
  names = []
  biomedcoop_fewshot.sweep(lambda **kw: names.append(kw["arg"]), arg)
  points = array._points([([f"{n},root={root}"], tmp_path / "w" / n) for n in names],
                         lambda cmd: biomedcoop_fewshot.get_config(cmd[0]))
  done = next(p for p in points if "method=coop,dataset=btmri" in p.command[0])
  done.workdir.mkdir(parents=True)
  (done.workdir / "config.json").write_text("{}")
  (done.workdir / "results.json").write_text("{}")
  os.utime(done.workdir / "config.json", (1000.0, 1000.0))
  os.utime(done.workdir / "results.json", (1050.0, 1050.0))  # 50 s for its 100 steps
  text, ok = plan.plan(points, biomedcoop_fewshot.unrunnable(arg), "t")
  assert ok, text
  for d, name in (("btmri", "BTMRI"), ("busi", "BUSI")):
    assert f"present  dataset {d} (images): {root}/{name}/{name}" in text
    assert f"present  dataset {d} (split file): {root}/{name}/split_{name}.json" in text
  # the samples' split files are not the published ones: said beside them
  assert text.count("is not the published split's") == 2
  assert "runs: 12 runnable, 1 finished, 11 to run" in text
  # CoOp at K = 1: one step per epoch (4 or 3 images, batch 32 -> the whole set), 100 epochs;
  # 5 runs to do x 100 steps at the finished run's 50 s / 100 steps
  assert "coop: 500 steps, ~0.07 h at 0.500 s/step" in text
  assert "1 fit pack(s)" in text or "2 fit pack(s)" in text


def test_array_runs_every_point_once_and_a_finished_index_is_a_noop(tmp_path):
  points = array._points([([f"p{i}"], tmp_path / f"point{i}") for i in range(5)], None)
  ran = collections.Counter()

  def runner(cmd):
    ran[cmd[0]] += 1
    d = tmp_path / f"point{cmd[0][1:]}"
    d.mkdir()
    (d / "results.json").write_text("{}")

  assert [array.run_index(points, i, runner) for i in range(5)] == ["ran"] * 5
  assert ran == {f"p{i}": 1 for i in range(5)}
  assert array.run_index(points, 3, runner) == "finished" and ran["p3"] == 1
  with pytest.raises(ValueError, match="has 5 points"):
    array.run_index(points, 5, runner)
  dup = array._points([(["a"], tmp_path / "x"), (["b"], tmp_path / "x")], None)
  with pytest.raises(ValueError, match="share the workdir"):
    array.run_index(dup, 0, runner)
  os.environ["PAPER_TEST_TASK"] = "4"
  try:
    assert array.index_from(None, "PAPER_TEST_TASK") == 4 and array.index_from(2) == 2
  finally:
    del os.environ["PAPER_TEST_TASK"]


def test_array_and_count_from_the_launcher(tmp_path):
  """The launcher's --sweep=count sizes the array; a finished index is left alone."""
  cfg = f"--config={REPO}/configs/zeroshot.py:datasets=synthetic+busi"
  r = _launch(cfg, f"--workdir={tmp_path}", "--sweep=count")
  assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr[-2000:]
  done = tmp_path / "dataset-busi_shots-0_seed-1"
  done.mkdir()
  (done / "results.json").write_text(json.dumps({"finished": True}))
  r = _launch(cfg, f"--workdir={tmp_path}", "--sweep=array", env={"SLURM_ARRAY_TASK_ID": "1"})
  assert r.returncode == 0, r.stderr[-2000:]
  assert "is finished, nothing to do" in r.stderr
  assert json.loads((done / "results.json").read_text()) == {"finished": True}


def test_compilation_cache_is_on_by_default_configurable_and_can_be_switched_off(tmp_path):
  from biomedjax import compile_cache
  env = {"XDG_CACHE_HOME": str(tmp_path)}
  assert compile_cache.configure(env) == str(tmp_path / "biomedjax" / "jax")
  assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "biomedjax" / "jax")
  env = {compile_cache.ENV: str(tmp_path / "mine")}
  assert compile_cache.configure(env) == str(tmp_path / "mine")
  env = {compile_cache.ENV: "off"}
  assert compile_cache.configure(env) is None and "JAX_COMPILATION_CACHE_DIR" not in env
  env = {"JAX_COMPILATION_CACHE_DIR": "/x", compile_cache.ENV: "off"}  # the user's own wins
  assert compile_cache.configure(env) == "/x"
