"""Methods by config name: the one registry, a literal dict (add a new method here by hand).

Every method registered here is checked by tests/test_method_contract.py.
"""

from biomedjax.methods import (ar, attrvr, biomedcoop, biomedvr, calibprompt, clip_adapter,
                               cocoop, coop, finetune, head_probe, kgcoop, linear_head,
                               linear_probe, lp_plus_plus, prograd, tip_adapter, tip_adapter_f,
                               vp, zeroshot)

METHODS = {
    "ar": ar.build,
    "attrvr": attrvr.build,
    "biomedcoop": biomedcoop.build,
    "biomedvr": biomedvr.build,
    "calibprompt": calibprompt.build,
    "clip_adapter": clip_adapter.build,
    "cocoop": cocoop.build,
    "coop": coop.build,
    "finetune": finetune.build,
    "head_probe": head_probe.build,
    "kgcoop": kgcoop.build,
    "linear_head": linear_head.build,
    "linear_probe": linear_probe.build,
    "lp_plus_plus": lp_plus_plus.build,
    "prograd": prograd.build,
    "tip_adapter": tip_adapter.build,
    "tip_adapter_f": tip_adapter_f.build,
    "vp": vp.build,
    "zeroshot": zeroshot.build,
}
