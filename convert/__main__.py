"""``python -m convert``: the converter CLI (same as ``python -m convert.biomedclip``)."""

import sys

from .biomedclip import main

if __name__ == "__main__":
  sys.exit(main())
