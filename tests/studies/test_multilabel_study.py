"""The IU-Xray study tables: rules A/B per table, the zero-shot sweep, files written by the CLI."""

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from biomedjax.studies import multilabel_study as study
from biomedjax.data import iuxray


def _settings(tmp_path):
  rng = np.random.default_rng(0)
  n, names = 80, list(iuxray.LABELS)
  targets = (rng.random((n, 14)) < 0.15).astype(np.float32)
  targets[targets[:, :13].sum(1) == 0, 13] = 1  # No Finding when nothing else
  targets[targets[:, :13].sum(1) > 0, 13] = 0
  emb = rng.normal(size=(n, 8)) + 3 * targets[:, :8]
  zs = (np.abs(rng.normal(size=(n, 14))) + 0.5 * targets + 0.1).astype(np.float32)  # raw dots > 0
  head = (rng.normal(size=(n, 14)) + 2 * targets - 1).astype(np.float32)
  paths = [
      study.save_setting(tmp_path / "zs" / study.SETTING_FILE, "zs", "zeroshot", zs, targets,
                         names, iuxray.DOMAINS, embeddings=emb, train_embeddings=emb[:40] + 0.1,
                         train_targets=targets[:40]),
      study.save_setting(tmp_path / "lp.npz", "lp", "head", head, targets, names, iuxray.DOMAINS,
                         embeddings=emb, minutes=6.1)]
  return paths, zs, head, targets


def test_tables_use_the_stated_rules(tmp_path):
  paths, zs, head, y = _settings(tmp_path)
  results = study.write_study([tmp_path / "zs", paths[1]], tmp_path / "out")
  zs_r, lp_r = results
  # Table 1: rule A (row min-max > 0.5).
  for r, s in ((zs_r, zs), (lp_r, head)):
    mm = (s - s.min(1, keepdims=True)) / (np.ptp(s, 1, keepdims=True) + 1e-8)
    pred = (mm > 0.5).astype(int)
    assert r["rule_a"] == "rowminmax@0.5"
    assert r["table1"]["macro_f1"] == pytest.approx(
        skm.f1_score(y, pred, average="macro", zero_division=0))
    assert r["table1"]["exact_match"] == pytest.approx(skm.accuracy_score(y, pred))
    assert r["table1"]["lrap"] == pytest.approx(skm.label_ranking_average_precision_score(y, s))
    assert r["table1"]["coverage_error"] == pytest.approx(skm.coverage_error(y, s))
  # Tables 2-3: rule B. Zero-shot dot products are all positive: every label predicted, so the
  # per-label F1 is 2p/(1+p) with p the prevalence (the paper's zero-shot row).
  assert zs_r["rule_b"] == "dot>0" and lp_r["rule_b"] == "logit>0"
  prevalence = y.astype(np.float64).mean(0)
  np.testing.assert_allclose(list(zs_r["per_label_f1"].values()),
                             2 * prevalence / (1 + prevalence), atol=1e-12)
  f1 = skm.f1_score(y, (head > 0).astype(int), average=None, zero_division=0)
  np.testing.assert_allclose(list(lp_r["per_label_f1"].values()), f1, atol=1e-12)
  cols = [iuxray.LABELS.index(n) for n in iuxray.DOMAINS["Pulmonary"]]
  assert lp_r["per_domain_f1"]["Pulmonary"] == pytest.approx(skm.f1_score(
      y[:, cols].max(1), (head[:, cols] > 0).max(1)))
  assert [p["threshold"] for p in zs_r["sweep"]] == pytest.approx(np.arange(0.2, 0.91, 0.05))
  assert "sweep" not in lp_r and "knn5_cosine_heldout_accuracy" in zs_r["separability"]
  # Files: every table in Markdown and CSV, and all numbers in JSON.
  out = tmp_path / "out"
  for name in ("table1_overall", "table2_per_label", "table3_per_domain", "zeroshot_sweep",
               "separability"):
    assert (out / f"{name}.md").read_text().startswith("| setting |")
    assert (out / f"{name}.csv").read_text().startswith("setting,")
  t1 = (out / "table1_overall.md").read_text()
  assert "| lp |" in t1 and "rowminmax@0.5" in t1 and "6.10" in t1
  assert "Cardiovascular" in (out / "table3_per_domain.md").read_text()
  assert len((out / "zeroshot_sweep.csv").read_text().splitlines()) == 16
  assert json.loads((out / "study.json").read_text())[1]["name"] == "lp"


def test_cli_and_errors(tmp_path, capsys):
  paths, zs, _, y = _settings(tmp_path)
  assert study.main([str(p) for p in paths] + ["--out", str(tmp_path / "o"),
                                               "--threshold", "0.3"]) == 0
  assert "rowminmax@0.3" in (tmp_path / "o" / "table1_overall.md").read_text()
  other = study.save_setting(tmp_path / "x.npz", "x", "head", zs, y,
                             list(reversed(iuxray.LABELS)))
  assert study.main([str(paths[0]), str(other), "--out", str(tmp_path / "o2")]) == 2
  assert "label order" in capsys.readouterr().err
  (tmp_path / "junk.npz").write_bytes(b"junk")
  assert study.main([str(tmp_path / "junk.npz"), "--out", str(tmp_path / "o3")]) == 2
  assert "junk.npz: not a setting file" in capsys.readouterr().err
  with pytest.raises(ValueError, match="kind='probe'"):
    study.save_setting(tmp_path / "y.npz", "y", "probe", zs, y, iuxray.LABELS)
