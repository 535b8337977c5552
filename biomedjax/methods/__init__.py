"""Methods by config name: the one registry, a literal dict (add a new method here by hand)."""

from biomedjax.methods import biomedcoop, cocoop, coop, linear_probe

METHODS = {
    "biomedcoop": biomedcoop.build,
    "cocoop": cocoop.build,
    "coop": coop.build,
    "linear_probe": linear_probe.build,
}
