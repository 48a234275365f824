"""Answer scoring, one small module per job (see ``tasks/README.md`` "Scoring" for the rules, by example).

* :mod:`.region` -- which text after the delimiter is the answer (first line, open math groups, ``or`` lines).
* :mod:`.gsm8k`, :mod:`.math_answer`, :mod:`.choice`, :mod:`.qa` -- the ``compat="fixed"`` judges: one
  answer or nothing (hedges are wrong), each returning a :class:`.verdict.Verdict`.
* :mod:`.latex` -- boxed/span extraction and the MATH normaliser; :mod:`.verify` -- math-verify in a worker
  process with a hard per-call timeout.
* :mod:`.original` -- the authors' parsers, bugs included, for ``compat="original"``.

:func:`hrpo.rewards.score` is the entry point; :mod:`hrpo.answers` keeps the older helper names.
"""
