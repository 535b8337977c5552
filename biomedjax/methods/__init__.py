"""Methods by config name: the one registry, a literal dict of classes (add a new method here
by hand). The engine builds one with ``METHODS[name].build(backbone, task, config.method,
objective)`` and learns everything else from the class's declarations (``methods/base.py``).

Every method registered here is checked by tests/methods/test_method_contract.py.
"""

from biomedjax.methods import (ar, attrvr, biomedcoop, biomedvr, calibprompt, clip_adapter,
                               cocoop, coop, finetune, head_probe, kgcoop, linear_head,
                               linear_probe, lp_plus_plus, prograd, tip_adapter, tip_adapter_f,
                               vp, zeroshot)

METHODS = {
    "ar": ar.LabelProgram,
    "attrvr": attrvr.AttrVR,
    "biomedcoop": biomedcoop.BiomedCoOp,
    "biomedvr": biomedvr.BioMedVR,
    "calibprompt": calibprompt.CalibPrompt,
    "clip_adapter": clip_adapter.ClipAdapter,
    "cocoop": cocoop.CoCoOp,
    "coop": coop.CoOp,
    "finetune": finetune.FineTune,
    "head_probe": head_probe.HeadProbe,
    "kgcoop": kgcoop.KgCoOp,
    "linear_head": linear_head.LinearHead,
    "linear_probe": linear_probe.LinearProbe,
    "lp_plus_plus": lp_plus_plus.LPPlusPlus,
    "prograd": prograd.ProGrad,
    "tip_adapter": tip_adapter.TipAdapter,
    "tip_adapter_f": tip_adapter_f.TipAdapterF,
    "vp": vp.VP,
    "zeroshot": zeroshot.ZeroShot,
}
