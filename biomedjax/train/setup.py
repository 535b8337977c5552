"""Everything a run builds from its config before the first step: backbone, data, task.

Kept apart from the loop so that the loop reads as the training algorithm only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib

import jax

from biomedjax import run_facts
from biomedjax.data import (calibprompt_layout, catalog, fewshot, natural, readers, synthetic,
                            tfds_source)
from biomedjax.data import splits as splits_lib
from biomedjax.data.sources import (PREPARED_SPLIT_FILE, ArrayRecordSource, ImageFileSource,
                                    validate_images, validate_splits)
from biomedjax.methods import METHODS
from biomedjax.methods.base import Backbone, Task
from biomedjax.models import biomedclip as bc
from biomedjax.models import config as model_config
from biomedjax.models import families, preprocess
from biomedjax.models.clip import CLIP

log = logging.getLogger("biomedjax")


def check_model(model_cfg) -> None:
  """``model.preset`` / ``model.init`` refused in one line before anything is written (a typo'd
  preset used to surface as a bare KeyError after the few-shot selection was on disk)."""
  if model_cfg.init:
    if not (pathlib.Path(model_cfg.init) / bc.CONFIG_FILE).is_file():
      raise FileNotFoundError(
          f"--config.model.init={model_cfg.init}: not a converted model folder (no "
          f"{bc.CONFIG_FILE}); write one with `python -m convert.biomedclip --out DIR`, or pass "
          "--config.model.init= for random weights")
    return
  if model_cfg.preset not in model_config.PRESETS:
    import difflib
    close = difflib.get_close_matches(model_cfg.preset, list(model_config.PRESETS), n=1)
    raise ValueError(f"--config.model.preset={model_cfg.preset}: no such preset"
                     + (f"; did you mean {close[0]}?" if close else "")
                     + f" (presets: {', '.join(model_config.PRESETS)})")


PIXEL_NORMS = ("model", "clip")


def pixel_norm(cfg: model_config.CLIPConfig, norm: str) -> model_config.CLIPConfig:
  """``cfg`` with the image mean/std of ``model.pixel_norm``: "model" keeps the config's own,
  "clip" sets OpenAI CLIP's (a Dassl trainer's ``INPUT.PIXEL_MEAN/STD``, e.g. CalibPrompt's
  MedCLIP yamls, which differ from MedCLIP's own grayscale values). Only the device-side
  standardisation reads them (``Backbone.normalize``)."""
  if norm == "model":
    return cfg
  if norm == "clip":
    return dataclasses.replace(cfg, image_mean=preprocess.OPENAI_MEAN,
                               image_std=preprocess.OPENAI_STD)
  raise ValueError(f"--config.model.pixel_norm={norm}: use one of {PIXEL_NORMS}")


def build_backbone(model_cfg, workdir: pathlib.Path, words=()) -> tuple[Backbone, dict]:
  """The frozen backbone: converted weights from ``model.init``, or random ``model.preset``.

  Random weights exist for the offline demo and smoke tests; every number they produce is
  meaningless for medical images, and the log says so loudly.
  """
  dtype = model_cfg.compute_dtype
  remat = bool(model_cfg.get("remat", False))  # jax.checkpoint of the image tower's blocks
  norm = model_cfg.get("pixel_norm", "model")
  if model_cfg.init:
    m = bc.load(model_cfg.init)
    module = m.module.clone(remat=remat, cfg=pixel_norm(m.cfg, norm))
    return Backbone(module, m.tokenizer, dtype), m.params
  cfg = pixel_norm(model_config.PRESETS[model_cfg.preset](), norm)
  log.warning("model.init is empty: using RANDOM weights of preset %r (no pretrained knowledge; "
              "for real runs pass --config.model.init=<converted BiomedCLIP dir>)", model_cfg.preset)
  if model_cfg.get("tokenizer", ""):  # a real vocabulary (e.g. bpe.write_openclip_vocab's)
    tokenizer = families.load_tokenizer(model_cfg.tokenizer, cfg)
  else:
    tokenizer = families.random_tokenizer(cfg, workdir / "random_tokenizer", words)
  return Backbone(CLIP(cfg, remat=remat), tokenizer, dtype), bc.init_params(cfg)


@dataclasses.dataclass
class RunData:
  """Class names and one grain random-access source per split (few-shot selection applied)."""
  classnames: tuple[str, ...]
  splits: dict[str, object]            # split -> ImageFileSource | SubsetSource of ArrayRecord
  novel_classnames: tuple[str, ...] = ()
  novel_test: object = None
  kind: str = "multiclass"             # "multilabel" when targets are multi-hot vectors
  skipped_images: list = dataclasses.field(default_factory=list)  # {"origin", "path", "error"}
  split_file: str = ""
  source: dict = dataclasses.field(default_factory=dict)  # results.json's data_source (tfds)


def build_multilabel_data(data_cfg, workdir: pathlib.Path) -> RunData:
  """``dataset="synthetic_multilabel"``: multi-hot CSVs (one 0/1 column per class), whole splits.

  Few-shot sampling (K images per class) is defined for single-label data only; ``shots`` must be 0.
  """
  if data_cfg.shots:
    raise ValueError(f"config.data.shots={data_cfg.shots}: few-shot sampling is defined for "
                     "single-label data; a multilabel dataset uses whole splits (shots=0)")
  if data_cfg.setting != "few_shot":
    raise ValueError("config.data.setting='base2novel' is defined for single-label data only")
  out = workdir / "synthetic_data"
  s = data_cfg.synthetic
  if not (out / "test.csv").exists():
    synthetic.generate_multilabel(out, s.classes, size=s.size, seed=0)
  classnames = [synthetic.class_folder(c) for c in range(s.classes)]
  splits = {k: ImageFileSource(validate_images(
      readers.read_csv(out / f"{k}.csv", label_columns=classnames), data_cfg.skip_bad_images))
      for k in ("train", "val", "test")}
  return RunData(classnames=tuple(classnames), splits=splits, kind="multilabel")


def _split_file_and_root(data_cfg, workdir: pathlib.Path):
  """(split file, image root or None, class names to check against or None).

  Own data: a ``split_file`` defines its classes (names in label order, from the file), and
  ``dataset`` is then a free name for the run (the catalog's key included). A ``prepared``
  folder carries its split file, so it needs nothing else. Otherwise the catalog's layout.
  """
  if data_cfg.dataset == "synthetic":
    out = workdir / "synthetic_data"
    if not (out / synthetic.SPLIT_FILE).exists():
      s = data_cfg.synthetic
      synthetic.generate(out, s.classes, s.per_class, s.size, seed=0)
    return out / synthetic.SPLIT_FILE, out, None
  if data_cfg.get("layout", "") == "calibprompt":  # <root>/<name>/images/{train,test}/<folder>/
    split_file, image_root = calibprompt_layout.write_split_file(
        data_cfg.root, data_cfg.dataset, workdir / "calibprompt_split.json", data_cfg.sort_paths)
    return split_file, image_root, None
  if data_cfg.get("layout", ""):
    raise ValueError(f"config.data.layout={data_cfg.layout!r}: use '' (split files) or "
                     "'calibprompt'")
  info = catalog.lookup(data_cfg.dataset)
  if data_cfg.split_file:
    image_root = data_cfg.image_root or (info.image_root(data_cfg.root) if info else "")
    if not image_root and not data_cfg.prepared:
      raise ValueError(f"config.data.split_file={data_cfg.split_file!r} needs "
                       "config.data.image_root: the folder its image paths are relative to")
    return pathlib.Path(data_cfg.split_file), pathlib.Path(image_root) if image_root else None, None
  if data_cfg.prepared:
    carried = pathlib.Path(data_cfg.prepared) / PREPARED_SPLIT_FILE
    if carried.is_file():
      return carried, None, None
  if info:
    return (info.run_split_file(data_cfg.root, workdir),
            pathlib.Path(data_cfg.image_root or info.image_root(data_cfg.root)),
            info.classnames or None)  # natural-image datasets: the split file's names
  raise ValueError(f"config.data.dataset={data_cfg.dataset!r} is not one of "
                   f"{sorted(catalog.DATASETS)}, {sorted(natural.DATASETS)} or 'synthetic': "
                   "for your own data set "
                   "config.data.split_file and config.data.image_root (or config.data.prepared)")


def build_iuxray_data(data_cfg) -> RunData:
  """IU-Xray frontal images with their 14 CheXbert labels (``biomedjax.data.iuxray``), split by
  uid; ``config.data.iuxray`` holds the reader's options (configs/iuxray.py)."""
  from biomedjax.data import iuxray
  if data_cfg.shots or data_cfg.setting != "few_shot":
    raise ValueError("config.data.dataset='iuxray' is multilabel: use shots=0 and "
                     "setting='few_shot' (whole splits)")
  c = data_cfg.iuxray
  labels_csv = c.labels_csv or str(pathlib.Path(data_cfg.root) / iuxray.REFERENCE_CSV)
  examples = iuxray.read_iuxray(data_cfg.root, labels_csv, split=c.split, frontal=c.frontal,
                                seed=c.split_seed, uncertain_as=c.uncertain_as,
                                missing_frontal=c.missing_frontal)
  splits = {k: ImageFileSource(validate_images(v, data_cfg.skip_bad_images))
            for k, v in examples.items()}
  return RunData(classnames=iuxray.LABELS, splits=splits, kind="multilabel")


def build_data(data_cfg, seed: int, workdir: pathlib.Path) -> RunData:
  """Reads the split file, draws the reference's few-shot sets, writes them for audit."""
  if data_cfg.dataset == "synthetic_multilabel":
    return build_multilabel_data(data_cfg, workdir)
  if data_cfg.dataset == "iuxray":
    return build_iuxray_data(data_cfg)
  if data_cfg.get("source", "files") != "files":  # tensorflow-datasets (data/tfds_source.py)
    return tfds_source.build_data(data_cfg, seed, workdir)
  split_file, image_root, classnames = _split_file_and_root(data_cfg, workdir)
  prepared = pathlib.Path(data_cfg.prepared) if data_cfg.prepared else None
  items = splits_lib.read_split_file(split_file, classnames, None if prepared else image_root)
  natural.check_split(data_cfg.dataset, items, split_file)
  lines = splits_lib.entry_lines(split_file)
  origin = {(k, it.path): f"{split_file}:{n}" for k in items for it, n in zip(items[k], lines[k])}
  # The adapter harness draws every run's images with split_seed (1); 0 = the run seed.
  split_seed = data_cfg.get("split_seed", 0) or seed
  if data_cfg.shots > 0:
    items = fewshot.fewshot_splits(items, data_cfg.shots, split_seed)
  novel = {}
  if data_cfg.setting == "base2novel":
    novel = fewshot.subsample_classes(items, "new")
    items = fewshot.subsample_classes(items, "base")
  elif data_cfg.setting != "few_shot":
    raise ValueError(f"config.data.setting={data_cfg.setting!r}: 'few_shot' or 'base2novel'")
  skipped = []
  examples = {}

  def source(split, its):
    if prepared:  # records written (and validated) by biomedjax.data.prepare
      return ArrayRecordSource(prepared, split.replace("novel_", "")).select(its)
    return ImageFileSource(examples[split])

  if not prepared:  # every split checked in one pass: one error lists every bad image once
    wanted = {k: v for k, v in items.items() if v}
    if novel:
      wanted["novel_test"] = novel["test"]
    examples = validate_splits(
        {k: readers.from_items(v, image_root, [origin.get(("test" if k == "novel_test" else k,
                                                            it.path), it.path) for it in v])
         for k, v in wanted.items()}, data_cfg.skip_bad_images, skipped)
  classnames = tuple(fewshot.classnames_of(items["train"]))
  split_sources = {k: source(k, v) for k, v in items.items() if v}
  novel_test = source("novel_test", novel["test"]) if novel else None
  bad = {r["path"] for r in skipped}
  if bad:  # the selection file lists what the run trains on: the skipped images are not in it
    root = pathlib.Path(image_root)
    items = {k: [it for it in v if str(root / it.path) not in bad] for k, v in items.items()}
  if jax.process_index() == 0:
    fewshot.write_selection(workdir / "fewshot_selection.json", items, shots=data_cfg.shots,
                            seed=split_seed, split_file=str(split_file),
                            skipped_images=[r["origin"] for r in skipped])
  data = RunData(
      classnames=classnames, splits=split_sources,
      novel_classnames=tuple(fewshot.classnames_of(novel["test"])) if novel else (),
      novel_test=novel_test, skipped_images=skipped, split_file=str(split_file))
  run_facts.warn_short_classes(data, data_cfg.shots)  # before training, not after
  return data


def vocabulary_words(config, data: RunData) -> list[str]:
  """Words a random-weight model's generated vocabulary needs as whole tokens: the class names,
  the template and the method's text settings (e.g. CoOp's ctx_init must keep its token count)."""
  texts = [*data.classnames, *data.novel_classnames, config.data.template]
  texts += [v for v in config.method.values() if isinstance(v, str)]
  method = METHODS.get(config.method.name)
  texts += method.vocabulary_words(config.method) if method else []  # e.g. VR attributes
  return " ".join(texts).replace("{}", " ").replace(".", " ").split()


def load_llm_prompts(path: str) -> dict[str, tuple[str, ...]] | None:
  """A prompt-ensemble file: ``{"llm_prompts": {classname: [prompt, ...]}}`` (BiomedCoOp)."""
  if not path:
    return None
  try:
    data = json.loads(pathlib.Path(path).read_text())
    return {k: tuple(v) for k, v in data["llm_prompts"].items()}
  except (OSError, json.JSONDecodeError, KeyError, AttributeError) as e:
    raise ValueError(f"{path}: not a prompt-ensemble file with an 'llm_prompts' object "
                     f"({type(e).__name__}: {e})") from e


def make_task(classnames, data_cfg, kind: str = "multiclass") -> Task:
  return Task(tuple(classnames), data_cfg.template, load_llm_prompts(data_cfg.llm_prompts), kind)

