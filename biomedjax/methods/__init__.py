"""Methods by config name: the one registry, a literal dict (add a new method here by hand)."""

from biomedjax.methods import coop, linear_probe

METHODS = {
    "coop": coop.build,
    "linear_probe": linear_probe.build,
}
