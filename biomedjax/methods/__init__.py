"""Methods by config name: the one registry, a literal dict (add a new method here by hand)."""

from biomedjax.methods import (biomedcoop, cocoop, coop, kgcoop, linear_probe, prograd,
                               zeroshot)

METHODS = {
    "biomedcoop": biomedcoop.build,
    "cocoop": cocoop.build,
    "coop": coop.build,
    "kgcoop": kgcoop.build,
    "linear_probe": linear_probe.build,
    "prograd": prograd.build,
    "zeroshot": zeroshot.build,
}
