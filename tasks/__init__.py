"""The lm-eval task folder (YAMLs + ``utils.py``), installed as the package ``hrpo.tasks``.

lm-eval reads it as a folder (``--include_path``; ``hrpo eval`` passes :func:`hrpo.commands.eval.tasks_dir`) and
imports ``utils.py`` by file path for the YAMLs' ``!function utils.*`` hooks, so nothing imports this package;
it exists so that ``importlib.resources`` finds the folder in a checkout and in an installed wheel alike.
"""
