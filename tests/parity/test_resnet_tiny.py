"""The ResNet tower (biomedjax/models/resnet.py) against PyTorch at small sizes, on every commit:

* ``variant="clip"`` vs open_clip ``ModifiedResNet`` (the class BiomedCoOp's ``clip/pmcclip.py``
  copies) and ``variant="torchvision"`` vs ``torchvision.models.resnet.ResNet(Bottleneck, ...)``
  (resnet50's code), eval mode and train mode (batch statistics), with the running statistics
  after N train-mode steps equal to torch's (momentum 0.1, unbiased variance);
* open_clip ``CLIP`` with a ResNet tower (OpenAI RN50's layout, tiny) through the converter CLI:
  features and logits; and the real ``RN50.json`` / ``RN50-quickgelu.json`` read as the
  ``clip_rn50`` presets.
"""

import json
import pathlib

import jax
import numpy as np
import open_clip
import pytest
import torch
import torchvision
from open_clip.modified_resnet import ModifiedResNet

import biomedjax
from biomedjax import pytree_paths
from biomedjax.models import config as model_config
from biomedjax.models.resnet import ResNet
from convert import biomedclip as conv
from convert import mapping
from convert.clip_config import from_open_clip_native
from tests.parity import clip_fixture
from tests.parity import pmcclip_fixture

STEPS = 3


def _rel(a, b):
  return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def _cos(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def _variables(model, rules):
  sd = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}  # no aliasing
  consumed = {k for r in rules.values() for k in r.keys} | set(mapping.bn_counters(rules))
  assert consumed == set(sd), sorted(set(sd) ^ consumed)[:5]
  tree = pytree_paths.unflatten({p: np.asarray(r.hook(*(sd[k] for k in r.keys)), np.float32)
                                 for p, r in rules.items()})
  return {"params": tree["m"], "batch_stats": tree["batch_stats"]["m"]}


CASES = {
    "clip": (lambda: ModifiedResNet([1, 2, 1, 1], output_dim=24, heads=4, image_size=64,
                                    width=16),
             dict(layers=(1, 2, 1, 1), width=16, output_dim=24, heads=4, image_size=64)),
    "torchvision": (lambda: torchvision.models.resnet.ResNet(
        torchvision.models.resnet.Bottleneck, [1, 1, 2, 1], num_classes=24),
        dict(layers=(1, 1, 2, 1), output_dim=24, variant="torchvision")),
}


@pytest.mark.parametrize("variant", sorted(CASES))
def test_resnet_eval_train_and_running_stats_match_torch(variant):
  build, kwargs = CASES[variant]
  torch.manual_seed(0)
  ref = build()
  pmcclip_fixture.perturb_(ref, seed=1)
  module = ResNet(**kwargs)
  v = _variables(ref, mapping.resnet_rules(kwargs["layers"], "m", "", variant=variant))
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 64, 64, 3)).astype(np.float32)
  ref.eval()
  with torch.no_grad():
    want = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
  assert _rel(jax.jit(module.apply)(v, x), want) < 1e-5
  train = jax.jit(lambda v, x: module.apply(v, x, mutable=["batch_stats"]))
  ref.train()
  for _ in range(STEPS):
    # 8 images: layer4 of the torchvision variant is 2x2 here, so its batch statistics pool 32
    # values; fewer make the batch variance (and so the comparison) ill-conditioned.
    x = rng.normal(size=(8, 64, 64, 3)).astype(np.float32)
    with torch.no_grad():
      want = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    got, upd = train(v, x)
    v = {"params": v["params"], "batch_stats": upd["batch_stats"]}
    assert _cos(got, want).min() > 0.99999 and _rel(got, want) < 1e-4
  ref.eval()
  drifted = _variables(ref, mapping.resnet_rules(kwargs["layers"], "m", "", variant=variant))
  for ours, theirs in zip(jax.tree.leaves(v["batch_stats"]),
                          jax.tree.leaves(drifted["batch_stats"])):
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)
  # A train-mode call without mutable batch_stats is refused by flax, not silently eval mode.
  with pytest.raises(Exception):
    module.apply(v, x, train=True)


def test_rn50_configs_read_as_presets():
  for name, preset in (("RN50.json", "clip_rn50"), ("RN50-quickgelu.json", "clip_rn50_quickgelu")):
    path = pathlib.Path(open_clip.__file__).parent / "model_configs" / name
    cfg = from_open_clip_native(json.loads(path.read_text()), {}, name)
    assert cfg == model_config.PRESETS[preset]()


@pytest.fixture(scope="module")
def rn_tiny(tmp_path_factory):
  src, torch_model = clip_fixture.make_openclip_checkpoint(tmp_path_factory.mktemp("rn_src"),
                                                           "tiny_clip_rn", seed=2)
  with torch.no_grad():  # open_clip's perturbation leaves buffers alone: move the statistics
    pmcclip_fixture.perturb_(torch_model.visual, seed=3)
  torch.save(torch_model.state_dict(), src / "open_clip_pytorch_model.bin")
  out = tmp_path_factory.mktemp("rn_out") / "tiny_clip_rn"
  assert conv.main(["--src", str(src), "--out", str(out)]) == 0
  return torch_model, out, biomedjax.load(out)


def test_openclip_resnet_clip_converts_and_matches(rn_tiny):
  torch_model, out, m = rn_tiny
  assert m.cfg == model_config.tiny_clip_rn()
  manifest = json.loads((out / "manifest.json").read_text())
  assert all(k.endswith("num_batches_tracked") for k in manifest["ignored_keys"]) and (
      len(manifest["ignored_keys"]) == 3 * 1 + 3 * 4 + 4)  # stem, 3 per block, 4 downsamples
  pixels = np.random.default_rng(1).normal(size=(2, 224, 224, 3)).astype(np.float32)
  texts = ["a photo of a glioma tumor.", "a normal brain"]
  ids, mask = m.tokenize(texts)
  t_pixels = torch.from_numpy(pixels).permute(0, 3, 1, 2)
  t_ids = torch.from_numpy(ids.astype(np.int64))
  with torch.no_grad():
    img_ref = torch_model.encode_image(t_pixels).numpy()
    logits_ref = torch_model.get_logits(t_pixels, t_ids)[0].numpy()
  assert _cos(m.encode_image(pixels), img_ref).min() > 0.99999
  assert _rel(m.encode_image(pixels), img_ref) < 1e-4
  assert _rel(m.logits(pixels, ids, mask), logits_ref) < 1e-4
