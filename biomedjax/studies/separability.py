"""How well image embeddings separate the findings of a multi-label dataset (numpy only).

The IU-Xray study (Sadman et al., BIOKDD'25; ``compute_separability`` in
``evaluatingBiomedClIP_IUXRAY.ipynb``, Nafiz95/BioVLM_Eval_CXR) reduces each image to ONE label,
the argmax of its 0/1 row, i.e. its first positive label in label order (with a "No Finding" last
column, No Finding only when it is alone; an all-zero row would map to label 0), and reports, on
raw (unnormalised) embeddings:

  * intra = (1/|C|) sum_c mean_{n in c} ||e_n - mu_c||_2 over the classes C present (unweighted),
  * inter = mean over pairs c < c' of ||mu_c - mu_c'||_2,
  * ratio = inter / (intra + 1e-9).

Class c's centroid mu_c is looked up by class id here. (The reference indexes its list of present
class means by class id, which only agrees when every class 0..K-1 is present.)

Beyond the paper, this module scores what the reference scored on the data it was fitted on, on
held-out data instead: ``knn_accuracy`` fits on one split (e.g. train embeddings) and scores
another (test); ``silhouette`` matches ``sklearn.metrics.silhouette_score`` (cosine by default, as
the reference).
"""

from __future__ import annotations

import numpy as np

RATIO_EPS = 1e-9


def first_positive_labels(targets) -> np.ndarray:
  """(N,) int: the argmax of each 0/1 row, i.e. the first positive label (0 for an empty row)."""
  targets = np.asarray(targets)
  if targets.ndim != 2:
    raise ValueError(f"targets must be (N, L) 0/1, got shape {targets.shape}")
  return targets.argmax(axis=1)


def _check(embeddings, labels) -> tuple[np.ndarray, np.ndarray]:
  embeddings = np.asarray(embeddings, np.float64)
  labels = np.asarray(labels)
  if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
    raise ValueError(f"embeddings {embeddings.shape} must be (N, D) and labels {labels.shape} (N,)")
  if not np.isfinite(embeddings).all():
    raise ValueError("embeddings contain NaN or inf")
  return embeddings, labels


def distance_ratio(embeddings, labels) -> dict:
  """Inter/intra class distances of the reference (Euclidean, unnormalised embeddings).

  ``labels`` are one int per example (see ``first_positive_labels``). Returns dict(inter, intra,
  ratio, classes): ``classes`` lists the present class ids. Needs at least two present classes.
  """
  embeddings, labels = _check(embeddings, labels)
  classes = np.unique(labels)
  if classes.size < 2:
    raise ValueError(f"distance_ratio needs at least two classes, got {classes.tolist()}")
  means = np.stack([embeddings[labels == c].mean(axis=0) for c in classes])
  intra = float(np.mean([np.linalg.norm(embeddings[labels == c] - means[i], axis=1).mean()
                         for i, c in enumerate(classes)]))
  i, j = np.triu_indices(classes.size, k=1)
  inter = float(np.linalg.norm(means[i] - means[j], axis=1).mean())
  return dict(inter=inter, intra=intra, ratio=inter / (intra + RATIO_EPS),
              classes=classes.tolist())


def pairwise_distances(a, b, metric: str = "cosine") -> np.ndarray:
  """(len(a), len(b)) distances: "cosine" = 1 - cos (sklearn's), or "euclidean"."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if metric == "cosine":
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), np.finfo(np.float64).tiny)
    return np.clip(1.0 - an @ bn.T, 0.0, 2.0)
  if metric == "euclidean":
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))
  raise ValueError(f"metric={metric!r}: 'cosine' or 'euclidean'")


def silhouette(embeddings, labels, metric: str = "cosine") -> float:
  """Mean silhouette coefficient, as ``sklearn.metrics.silhouette_score``.

  Per example: a = mean distance to the other members of its class, b = the smallest mean
  distance to another class, s = (b - a) / max(a, b); 0 for a class of one example.
  """
  embeddings, labels = _check(embeddings, labels)
  classes, idx = np.unique(labels, return_inverse=True)
  if not 2 <= classes.size <= labels.size - 1:
    raise ValueError(f"silhouette needs 2 <= classes ({classes.size}) <= examples - 1 "
                     f"({labels.size - 1})")
  d = pairwise_distances(embeddings, embeddings, metric)
  np.fill_diagonal(d, 0.0)
  onehot = np.eye(classes.size)[idx]               # (N, K)
  sums = d @ onehot                                # distance sums to each class
  counts = onehot.sum(0)
  own = counts[idx]
  a = np.where(own > 1, sums[np.arange(labels.size), idx] / np.maximum(own - 1, 1), 0.0)
  means = sums / counts
  means[np.arange(labels.size), idx] = np.inf
  b = means.min(axis=1)
  s = np.where(own > 1, (b - a) / np.maximum(np.maximum(a, b), np.finfo(np.float64).tiny), 0.0)
  return float(s.mean())


def knn_predict(train_x, train_y, x, k: int = 5, metric: str = "cosine") -> np.ndarray:
  """Majority vote of the k nearest training examples (uniform weights; a tie in votes goes to
  the smallest label), as ``sklearn.neighbors.KNeighborsClassifier``."""
  train_x, train_y = _check(train_x, train_y)
  if k > len(train_y):
    raise ValueError(f"k={k} exceeds the {len(train_y)} fitted examples")
  d = pairwise_distances(np.asarray(x, np.float64), train_x, metric)
  nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
  classes, idx = np.unique(train_y, return_inverse=True)
  votes = np.zeros((d.shape[0], classes.size))
  np.add.at(votes, (np.arange(d.shape[0])[:, None], idx[nearest]), 1.0)
  return classes[votes.argmax(axis=1)]


def knn_accuracy(train_x, train_y, test_x, test_y, k: int = 5, metric: str = "cosine") -> float:
  """Accuracy on held-out (test_x, test_y) of the k-NN classifier fitted on (train_x, train_y)."""
  test_x, test_y = _check(test_x, test_y)
  return float(np.mean(knn_predict(train_x, train_y, test_x, k, metric) == test_y))


def separability_report(test_embeddings, test_targets, train_embeddings=None,
                        train_targets=None, k: int = 5) -> dict:
  """The study's distance ratio on the test embeddings plus silhouette (cosine) and, given a
  training split, the held-out k-NN accuracy; labels by the first-positive rule."""
  y = first_positive_labels(test_targets)
  out = distance_ratio(test_embeddings, y)
  out["silhouette_cosine"] = silhouette(test_embeddings, y, "cosine")
  if train_embeddings is not None:
    out[f"knn{k}_cosine_heldout_accuracy"] = knn_accuracy(
        train_embeddings, first_positive_labels(train_targets), test_embeddings, y, k)
  out["num_examples"] = int(len(y))
  return out
