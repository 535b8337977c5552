"""biomedjax.studies.separability against scikit-learn and a loop transcription of the reference."""

import json

import numpy as np
import pytest
from sklearn.metrics import silhouette_score
from sklearn.neighbors import KNeighborsClassifier

from biomedjax.studies import separability


def _embeddings(seed=0, n=120, d=16, k=5):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(k, d)) * 3
  y = rng.integers(0, k, n)
  return centres[y] + rng.normal(size=(n, d)) + 5.0, y


def _reference_ratio(emb, y_flat):
  """compute_separability's inter/intra lines, for classes 0..K-1 all present."""
  means = [emb[y_flat == c].mean(0) for c in np.unique(y_flat)]
  intra = np.mean([np.linalg.norm(emb[y_flat == c] - means[c], axis=1).mean()
                   for c in np.unique(y_flat)])
  pairs = [np.linalg.norm(means[i] - means[j]) for i in range(len(means))
           for j in range(i + 1, len(means))]
  inter = float(np.mean(pairs))
  return inter, intra, inter / (intra + 1e-9)


def test_first_positive_label_rule():
  targets = np.array([[0, 1, 1, 0], [0, 0, 0, 1], [1, 0, 0, 1], [0, 0, 0, 0]])
  np.testing.assert_array_equal(separability.first_positive_labels(targets), [1, 3, 0, 0])


def test_distance_ratio_equals_reference_and_is_label_id_safe():
  emb, y = _embeddings()
  got = separability.distance_ratio(emb, y)
  inter, intra, ratio = _reference_ratio(emb, y)
  assert (got["inter"], got["intra"], got["ratio"]) == pytest.approx((inter, intra, ratio),
                                                                     rel=1e-12)
  # With a class missing, ids and list positions differ: centroids must follow the ids.
  y2 = np.where(y == 1, 4, y)  # classes {0, 2, 3, 4}
  got2 = separability.distance_ratio(emb, y2)
  mu = {c: emb[y2 == c].mean(0) for c in (0, 2, 3, 4)}
  intra2 = np.mean([np.linalg.norm(emb[y2 == c] - mu[c], axis=1).mean() for c in mu])
  assert got2["intra"] == pytest.approx(intra2, rel=1e-12) and got2["classes"] == [0, 2, 3, 4]


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_silhouette_equals_sklearn(metric):
  emb, y = _embeddings(1)
  y[0] = 7  # a singleton class scores 0
  assert separability.silhouette(emb, y, metric) == pytest.approx(
      silhouette_score(emb, y, metric=metric), abs=1e-10)


def test_knn_heldout_equals_sklearn():
  emb, y = _embeddings(2, n=200)
  train, test = slice(0, 140), slice(140, None)
  ref = KNeighborsClassifier(n_neighbors=5, metric="cosine").fit(emb[train], y[train])
  np.testing.assert_array_equal(separability.knn_predict(emb[train], y[train], emb[test]),
                                ref.predict(emb[test]))
  assert separability.knn_accuracy(emb[train], y[train], emb[test], y[test]) == pytest.approx(
      ref.score(emb[test], y[test]))


def test_report_is_json_and_uses_first_positive_labels():
  emb, y = _embeddings(3, n=90, k=4)
  targets = np.eye(4)[y]
  targets[::3, 3] = 1  # a second positive after the first: the first still wins
  rep = separability.separability_report(emb[30:], targets[30:], emb[:30], targets[:30])
  json.dumps(rep)
  assert rep["ratio"] == pytest.approx(separability.distance_ratio(emb[30:], y[30:])["ratio"])
  assert set(rep) >= {"inter", "intra", "ratio", "silhouette_cosine",
                      "knn5_cosine_heldout_accuracy"}
  with pytest.raises(ValueError, match="at least two classes"):
    separability.distance_ratio(emb[:5], np.zeros(5, int))
