"""Methods by config name: the one registry, a literal dict (add a new method here by hand)."""

from biomedjax.methods import linear_probe

METHODS = {
    "linear_probe": linear_probe.build,
}
