"""The experiment configs. Installed (``pip install .``) they are ``biomedjax.configs``, not a
top-level ``configs`` package that would collide with other projects'; the config files are
loaded by path and say ``from configs import base, common``, so the installed package also
answers to that name (an alias in ``sys.modules``, set only when it is imported as
``biomedjax.configs`` and no other ``configs`` is loaded)."""

import sys

if __name__ != "configs":
  sys.modules.setdefault("configs", sys.modules[__name__])
