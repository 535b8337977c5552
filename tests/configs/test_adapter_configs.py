"""The adapter configs carry the reference's values (BiomedCoOp's configs/trainers/*/few_shot.yaml
and trainers/*, as the spec tabulates them); each value is checked against the table here."""

import pytest

from configs import clip_adapter, lp_plus_plus, tip_adapter, tip_adapter_f

SPEC = {
    clip_adapter: dict(name="clip_adapter", alpha=0.5, reduction=4, select="last", lr=0.01,
                       batch_size=32, epochs=20, warmup_lr=1e-5, warmup_steps=1),
    tip_adapter: dict(name="tip_adapter", augment_epochs=1, search_scale=(50.0, 50.0),
                      search_step=(200, 200), init_beta=1.0, init_alpha=1.0, scale=85.2323,
                      cache=""),
    tip_adapter_f: dict(name="tip_adapter_f", lr=1e-3, epochs=20, batch_size=256, eps=1e-4,
                        weight_decay=0.01, betas=(0.9, 0.999), init_beta=1.0, init_alpha=1.0,
                        init_alpha_scale=10, second_stage=False, shared_keys=True,
                        augment_epochs=1,
                        search_scale=(50.0, 50.0), search_step=(200, 200), scale=85.2323,
                        max_views=0),
    lp_plus_plus: dict(name="lp_plus_plus", epochs=300, alpha_every=10, alpha_grad="accumulate",
                       alpha_factor=250.0, momentum=0.9, fp16_init=True),
}


@pytest.mark.parametrize("module", list(SPEC), ids=lambda m: m.__name__)
def test_reference_values(module):
  c = module.get_config("dataset=busi,shots=4,seed=2")
  assert dict(c.method) == SPEC[module]
  assert c.data.template == "a photo of a {}."
  assert c.data.split_seed == 1 and c.data.augment == "harness"
  assert c.data.test_batch_size == 100 and c.seed == 2 and c.data.shots == 4


@pytest.mark.parametrize("module", list(SPEC), ids=lambda m: m.__name__)
def test_sweep_is_datasets_x_shots_x_three_seeds(module):
  points = []
  module.sweep(lambda **kw: points.append(kw["arg"]), None)
  assert len(points) == 11 * 5 * 3
  assert {p.split("shots=")[1].split(",")[0] for p in points} == {"1", "2", "4", "8", "16"}
