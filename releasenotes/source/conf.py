"""Sphinx configuration of migrator's release notes (``tox -e releasenotes``)."""

project = "migrator release notes"
copyright = "migrator contributors"  # noqa: A001 - Sphinx's name
extensions = ["reno.sphinxext"]
master_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
