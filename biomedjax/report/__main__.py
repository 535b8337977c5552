"""``python -m biomedjax.report``: the report's CLI (``biomedjax.evaluation.report``)."""

from biomedjax.evaluation.report import cli

cli()
