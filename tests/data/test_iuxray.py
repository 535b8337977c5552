"""IU-Xray reader: the CheXbert label rule, frontal selection, the reference's uid split, errors."""

import csv

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from biomedjax.data import iuxray
from biomedjax.data.splits import SplitError

NAMES = list(iuxray.LABELS)


def _write_csv(path, header, rows):
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)
  return path


def _tree(tmp_path, uids, frontal_per_uid=1, lateral=True, label_rows=None, per_image=False):
  """A Kaggle-layout tree: projections CSV, empty image files, a labels CSV (per study or per
  image). Uids are listed in the given (not sorted) order."""
  image_dir = tmp_path / "images" / "images_normalized"
  image_dir.mkdir(parents=True, exist_ok=True)
  proj = []
  for uid in uids:
    views = ["Frontal"] * frontal_per_uid + (["Lateral"] if lateral else [])
    for k, view in enumerate(views):
      name = f"{uid}_IM-{k:04d}-{view}.dcm.png"
      (image_dir / name).write_bytes(b"")
      proj.append([uid, name, view])
  _write_csv(tmp_path / iuxray.PROJECTIONS_CSV, ["uid", "filename", "projection"], proj)
  rows = label_rows or {uid: [""] * 14 for uid in uids}
  if per_image:
    body = [[u, name, view] + rows[u] for u, name, view in proj]
    return _write_csv(tmp_path / "iuxray_frontal_14labels.csv",
                      ["uid", "filename", "projection"] + NAMES, body)
  return _write_csv(tmp_path / "chexbert.csv", ["uid"] + NAMES,
                    [[u] + rows[u] for u in uids])


def _sk_split(uids, second=0.5):
  train, rest = train_test_split(np.asarray(uids), test_size=0.30, random_state=42, shuffle=True)
  val, test = train_test_split(rest, test_size=second, random_state=42, shuffle=True)
  return {"train": list(train), "val": list(val), "test": list(test)}


@pytest.mark.parametrize("value, expected", [
    ("1", 1.0), ("1.0", 1.0), ("0", 0.0), ("0.0", 0.0), ("", 0.0), ("-1", 0.0), ("-1.0", 0.0)])
def test_label_rule_on_each_csv_value(value, expected):
  row = dict.fromkeys(NAMES, "")
  row["Cardiomegaly"] = value
  row["Edema"] = "1"  # keeps the row positive so No Finding stays out of it
  t = iuxray.target_from_row(row, "f.csv:2")
  assert t.dtype == np.float32 and t.shape == (14,)
  assert t[1] == expected and t[4] == 1.0 and t[13] == 0.0


def test_no_positive_becomes_no_finding_and_uncertain_option():
  row = dict.fromkeys(NAMES, "0")
  row["Lung Opacity"] = "-1"
  np.testing.assert_array_equal(iuxray.target_from_row(row, "x"), np.eye(14)[13])
  u_ones = iuxray.target_from_row(row, "x", uncertain_as=1.0)
  np.testing.assert_array_equal(u_ones, np.eye(14)[2])  # positive now, so no "No Finding"
  row["No Finding"] = "1"
  np.testing.assert_array_equal(iuxray.target_from_row(row, "x"), np.eye(14)[13])
  row["Fracture"] = "2"
  with pytest.raises(SplitError, match=r"x: 'Fracture' must be 1, 0, -1 or blank, got '2'"):
    iuxray.target_from_row(row, "x")


def test_reference_split_equals_sklearn_and_counts():
  rng = np.random.default_rng(0)
  uids = [str(u) for u in rng.permutation(np.arange(1, 5000))[:3818]]  # unsorted uid list
  ours = iuxray.uid_split(uids)
  assert ours == _sk_split(uids)
  # sklearn's test part is ceil(0.3 n), then ceil(0.5 of it): 3,818 uids -> 2,672 / 573 / 573.
  assert [len(ours[s]) for s in ("train", "val", "test")] == [2672, 573, 573]
  paper = iuxray.uid_split(uids, "paper")
  assert paper == _sk_split(uids, second=2 / 3)
  assert [len(paper[s]) for s in ("train", "val", "test")] == [2672, 382, 764]


def test_notebook_image_counts_with_two_frontal_uids(tmp_path):
  """2,673 / 573 / 572 images (the notebook's comments) arise from 3,818 frontal images over
  3,807 uids when 11 uids have two frontal images (9 in train, 2 in val): frontal='all'."""
  uids = [str(u) for u in range(1, 3808)]
  split = iuxray.uid_split(uids)
  assert [len(split[s]) for s in ("train", "val", "test")] == [2664, 571, 572]
  doubled = set(split["train"][:9] + split["val"][:2])
  rows = [[u, f"{u}_{k}.png", "Frontal"] + [""] * 14
          for u in uids for k in range(2 if u in doubled else 1)]
  labels = _write_csv(tmp_path / "frontal.csv", ["uid", "filename", "projection"] + NAMES, rows)
  out = iuxray.read_iuxray(tmp_path, labels, frontal="all", check_files=False)
  assert [len(out[s]) for s in ("train", "val", "test")] == [2673, 573, 572]
  first = iuxray.read_iuxray(tmp_path, labels, check_files=False)
  assert sum(map(len, first.values())) == 3807


@pytest.mark.parametrize("per_image", [False, True])
def test_read_iuxray_frontal_one_per_uid(tmp_path, per_image):
  uids = [str(u) for u in (7, 3, 12, 1, 9, 20, 15, 4, 30, 2)]
  rows = {u: [""] * 14 for u in uids}
  rows["3"][1] = "1"        # Cardiomegaly
  rows["3"][4] = "-1"       # uncertain Edema -> negative
  labels = _tree(tmp_path, uids, frontal_per_uid=2, label_rows=rows, per_image=per_image)
  out = iuxray.read_iuxray(tmp_path, labels)
  images = [e for s in ("train", "val", "test") for e in out[s]]
  assert len(images) == len(uids)  # one frontal image per uid, laterals dropped
  assert all(e.path.endswith("-0000-Frontal.dcm.png") for e in images)
  expected = iuxray.uid_split(uids)
  for s in ("train", "val", "test"):
    assert sorted(e.path.split("/")[-1].split("_")[0] for e in out[s]) == sorted(expected[s])
  by_uid = {e.path.split("/")[-1].split("_")[0]: e for e in images}
  np.testing.assert_array_equal(by_uid["3"].label, np.eye(14)[1])
  np.testing.assert_array_equal(by_uid["7"].label, np.eye(14)[13])
  assert sum(map(len, iuxray.read_iuxray(tmp_path, labels, frontal="all").values())) == 20


def test_errors_name_file_line_and_value(tmp_path):
  uids = ["1", "2", "3", "4", "5"]
  labels = _tree(tmp_path, uids)
  # missing column in the labels CSV and in the projections CSV
  bad = _write_csv(tmp_path / "bad.csv", ["uid"] + NAMES[:-1], [["1"] + [""] * 13])
  with pytest.raises(SplitError, match=r"bad.csv:1: missing column\(s\) \['No Finding'\]"):
    iuxray.read_iuxray(tmp_path, bad)
  proj = tmp_path / iuxray.PROJECTIONS_CSV
  text = proj.read_text()
  proj.write_text(text.replace("projection", "view", 1))
  with pytest.raises(SplitError, match=r"indiana_projections.csv:1: missing column\(s\) "
                                       r"\['projection'\]"):
    iuxray.read_iuxray(tmp_path, labels)
  proj.write_text(text)
  # an image listed but absent
  (tmp_path / "images/images_normalized/3_IM-0000-Frontal.dcm.png").unlink()
  with pytest.raises(SplitError, match=r"indiana_projections.csv:6: image "
                                       r"'3_IM-0000-Frontal.dcm.png' not found"):
    iuxray.read_iuxray(tmp_path, labels)
  assert iuxray.read_iuxray(tmp_path, labels, check_files=False)
  # a uid without a frontal image
  proj.write_text(text.replace("2_IM-0000-Frontal.dcm.png,Frontal",
                               "2_IM-0000-Frontal.dcm.png,Lateral"))
  with pytest.raises(SplitError, match=r"chexbert.csv:3: uid '2' has no frontal image"):
    iuxray.read_iuxray(tmp_path, labels, check_files=False)
  out = iuxray.read_iuxray(tmp_path, labels, check_files=False, missing_frontal="skip")
  assert sum(map(len, out.values())) == 4
  # a frontal image whose uid has no label row; a bad label value
  proj.write_text(text + "99,99_x.png,Frontal\n")
  with pytest.raises(SplitError, match=r"indiana_projections.csv:12: uid '99' has no row"):
    iuxray.read_iuxray(tmp_path, labels, check_files=False)
  proj.write_text(text)
  lines = labels.read_text().splitlines()
  lines[2] = lines[2].rsplit(",", 1)[0] + ",yes"
  labels.write_text("\n".join(lines) + "\n")
  with pytest.raises(SplitError, match=r"chexbert.csv:3: 'No Finding' must be .* got 'yes'"):
    iuxray.read_iuxray(tmp_path, labels)


def test_domains_cover_every_label_but_no_finding():
  assert sorted(i for v in iuxray.domain_indices().values() for i in v) == list(range(13))
