"""Moved to ``biomedjax.evaluation.report``; this name keeps ``python -m biomedjax.report`` and
``from biomedjax import report`` working."""

from biomedjax.evaluation.report import *  # noqa: F401,F403
