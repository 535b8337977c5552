"""PyTorch (open_clip) -> Flax weight conversion. Needs numpy; torch only to read ``.bin`` files."""
