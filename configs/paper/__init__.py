"""One config per published table: each a sweep whose points are that table's runs
(``biomedjax/sweep/recipes.py``)."""
