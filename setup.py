"""Package list for setuptools; everything else is in pyproject.toml.

Every package under ``hrpo/`` is found automatically (folders without ``__init__.py`` too: ``resources``); the repository folders ``retrieval/`` and ``tasks/`` are
added as ``hrpo.retrieval`` and ``hrpo.tasks`` (their folders come from ``package-dir`` in pyproject.toml).
pyproject's declarative ``packages.find`` cannot combine discovery with that mapping, hence this file.
"""

from setuptools import find_namespace_packages, setup

hrpo = find_namespace_packages(include=["hrpo", "hrpo.*"], exclude=["*__pycache__"])
setup(packages=[*hrpo, "hrpo.retrieval", "hrpo.tasks"])
