"""Every per-dataset value of the method configs equals the spec's table, read from its text.

The spec (``../shared/spec/METHODS.md``, sections 8 and 10b) lists the reference configs as
"Name value" or "Name (a, b, c)" runs; this test parses those lines, so a value typed wrongly in
``configs/`` (or a dataset left out) fails here. Skips where the spec is absent.
"""

import re

import pytest

from configs import biomedcoop, cocoop, coop, kgcoop, prograd

NAMES = {"BTMRI": "btmri", "BUSI": "busi", "CHMNIST": "chmnist", "COVID": "covid_19",
         "CTKidney": "ctkidney", "DermaMNIST": "dermamnist", "KneeXray": "kneexray",
         "Kvasir": "kvasir", "LungColon": "lungcolon", "OCTMNIST": "octmnist", "RETINA": "retina"}
NAME = "|".join(NAMES)


@pytest.fixture(scope="module")
def spec(shared_dir):
  path = shared_dir / "spec" / "METHODS.md"
  if not path.exists():
    pytest.skip(f"{path} absent")
  return " ".join(path.read_text().split())  # one line: entries may wrap


def _between(text, start, end):
  i = text.index(start)
  return text[i:text.index(end, i + len(start))]


def _scalars(text):
  return {NAMES[n]: float(v) for n, v in re.findall(rf"\b({NAME}) (\d+(?:\.\d+)?)", text)}


def _tuples(text):
  return {NAMES[n]: tuple(float(x) for x in v.split(","))
          for n, v in re.findall(rf"\b({NAME}) \(([\d., ]+)\)", text)}


def test_kgcoop_w(spec):
  table = _scalars(_between(spec, "KgCoOp few-shot W", "Base-to-novel"))
  assert len(table) == 11
  for dataset, w in table.items():
    c = kgcoop.get_config(f"dataset={dataset}")
    assert (c.method.w, c.data.batch_size, c.optim.lr, c.optim.epochs) == (w, 128, 0.002, 100)
  b2n = _between(spec, "Base-to-novel (`vit_b16_base2new`)", "- ProGrad")
  assert "W 8.0, 50 epochs, lr 0.002, batch 128" in b2n
  c = kgcoop.get_config("setting=base2novel,dataset=kvasir")
  assert (c.method.w, c.optim.epochs, c.optim.lr, c.data.batch_size, c.method.n_ctx) == (
      8.0, 50, 0.002, 128, 4)


def test_prograd_t(spec):
  table = _scalars(_between(spec, "ProGrad few-shot T", "Base-to-novel"))
  assert len(table) == 11
  for dataset, t in table.items():
    c = prograd.get_config(f"dataset={dataset}")
    assert (c.method.temperature, c.method.lam, c.data.batch_size, c.optim.lr,
            c.optim.epochs) == (t, 1.0, 128, 0.002, 100)
  assert "Base-to-novel: T 1.0, lr 0.0015, 50 epochs, batch 128" in spec
  c = prograd.get_config("setting=base2novel,dataset=btmri")
  assert (c.method.temperature, c.optim.lr, c.optim.epochs, c.data.batch_size) == (
      1.0, 0.0015, 50, 128)


def test_coop_and_cocoop_settings(spec):
  assert "CoOp base-to-novel: 50 epochs (few-shot 100), batch 32, lr 0.002" in spec
  for setting, epochs in (("few_shot", 100), ("base2novel", 50)):
    c = coop.get_config(f"setting={setting}")
    assert (c.optim.epochs, c.data.batch_size, c.optim.lr) == (epochs, 32, 0.002)
  assert "CoCoOp: 10 epochs, batch 1, lr 0.001 in both settings" in spec
  for setting in ("few_shot", "base2novel"):
    c = cocoop.get_config(f"setting={setting}")
    assert (c.optim.epochs, c.data.batch_size, c.optim.lr) == (10, 1, 0.001)


def test_biomedcoop_tables(spec):
  few = _between(spec, "Per-dataset (λ_SCCM, λ_KDSP): BTMRI", "Base-to-novel configs")
  kneexray_tau = 1.75 if "τ 1.5 (KneeXray 1.75)" in spec else None
  pairs = _tuples(few[few.index("BTMRI"):])
  assert len(pairs) == 11 and kneexray_tau == 1.75
  for dataset, (sccm, kdsp) in pairs.items():
    m = biomedcoop.get_config(f"dataset={dataset}").method
    tau = kneexray_tau if dataset == "kneexray" else 1.5
    assert (m.lambda_sccm, m.lambda_kdsp, m.tau) == (sccm, kdsp, tau), dataset
  b2n = _tuples(_between(spec, "BiomedCoOp base-to-novel (λ_SCCM, λ_KDSP, τ)", "BUSI has no"))
  assert len(b2n) == 10 and "busi" not in b2n
  for dataset, want in b2n.items():
    c = biomedcoop.get_config(f"dataset={dataset},setting=base2novel")
    m = c.method
    assert (m.lambda_sccm, m.lambda_kdsp, m.tau) == want, dataset
    assert (c.optim.epochs, c.data.batch_size, c.optim.lr) == (50, 4, 0.0025)
