"""User-facing tools around a finished run: CLI helpers, predict, export, the trained-state loader, provenance."""
