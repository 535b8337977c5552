"""Methods by config name: the one registry, a literal dict (add a new method here by hand).

Every method registered here is checked by tests/test_method_contract.py.
"""

from biomedjax.methods import (biomedcoop, cocoop, coop, finetune, head_probe, kgcoop,
                               linear_head, linear_probe, prograd, zeroshot)

METHODS = {
    "biomedcoop": biomedcoop.build,
    "cocoop": cocoop.build,
    "coop": coop.build,
    "finetune": finetune.build,
    "head_probe": head_probe.build,
    "kgcoop": kgcoop.build,
    "linear_head": linear_head.build,
    "linear_probe": linear_probe.build,
    "prograd": prograd.build,
    "zeroshot": zeroshot.build,
}
