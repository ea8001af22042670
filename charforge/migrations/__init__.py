"""Alembic migrations of the workspace database, shipped inside the package so wheels can migrate too.

The top-level `migrations/` folder of the repository is a link to this one (the design's layout);
`charforge db upgrade|downgrade|current` and `Forge.open` run them programmatically.
"""
