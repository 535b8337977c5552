"""Installs configs/, convert/ and launch.py under the biomedjax namespace.

``pip install .`` used to install top-level ``configs``, ``convert`` and ``launch`` modules, which
collide with other projects'. The repository keeps its layout (``python launch.py``, ``python -m
convert``); the installed names are ``biomedjax.configs``, ``biomedjax.convert`` and
``biomedjax.launcher.launch`` (the console scripts are unchanged). Everything else is in
pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["biomedjax", "biomedjax.*"]), "biomedjax.configs",
              "biomedjax.configs.paper",
              "biomedjax.convert", "biomedjax.launcher"],
    # biomedjax.launcher is the repository root: its only module is launch.py (setuptools
    # leaves the setup script itself out).
    package_dir={"biomedjax.configs": "configs", "biomedjax.convert": "convert",
                 "biomedjax.launcher": "."},
)
