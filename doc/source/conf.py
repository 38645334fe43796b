"""Sphinx configuration of migrator's documentation (``tox -e docs``)."""

import os
import sys

# Document the migrator in this tree, not an installed copy.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import migrator  # noqa: E402

project = "migrator"
copyright = "migrator contributors"  # noqa: A001 - Sphinx's name
release = version = migrator.__version__

extensions = [
    "oslo_config.sphinxext",  # .. show-options:: (the configuration reference)
    "sphinxarg.ext",  # .. argparse:: (the command line reference)
    "myst_parser",  # benchmarks/README.md, included as it is
    "sphinx.ext.autodoc",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
master_doc = "index"
exclude_patterns = ["_build"]
pygments_style = "sphinx"
html_theme = "alabaster"
html_theme_options = {"description": "Safe, fast live migration of libvirt/KVM guests"}
html_static_path: list[str] = []
# Headings of the included Markdown get anchors, so the policy page can link to tables.
myst_heading_anchors = 3
nitpicky = False
