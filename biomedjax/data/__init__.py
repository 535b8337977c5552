"""Datasets, few-shot splits and grain input pipelines.

Modules (import the one you need; this package imports nothing on its own):
  catalog    the 11 benchmark datasets: class names in label order, split file, folder name
  splits     read/validate/write split files (``{"train"|"val"|"test": [[path, label, name]]}``)
  fewshot    Dassl's K-shot sampling and base-to-novel class split (CLI: ``-m biomedjax.data.fewshot``)
  readers    examples from the reference layout, a class-per-folder tree or a CSV
  iuxray     IU-Xray multi-label reader (14 CheXbert labels, patient-grouped split)
  sources    random-access sources for grain: image files on disk or prepared ArrayRecord shards
  transforms decoding, torchvision-exact RandomResizedCrop, eval preprocessing
  pipeline   train/eval grain pipelines yielding global ``jax.Array`` batches
  prepare    ArrayRecord preparation through a TFDS builder (CLI: ``-m biomedjax.data.prepare``)
  synthetic  a learnable synthetic dataset for demos and tests (CLI: ``-m biomedjax.data.synthetic``)
"""
