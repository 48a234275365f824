"""The benchmark registry: one row per benchmark, read by the loaders, the lm-eval tasks, the leaderboard and
the tests.

A row says where a benchmark's rows come from (``loader``, ``splits``, ``eval_split``), how it is asked and
scored (``prompt``: the row ``task`` that picks the prompt in :mod:`hrpo.prompts` and the scorer in
:mod:`hrpo.rewards`; ``metrics``; ``max_gen_toks``) and where it shows (``group``, ``label``, ``paper``,
``stock``). The lm-eval task of row ``key`` is ``tasks/hrpo_<key>.yaml``, whose only benchmark-specific input to
the code is ``dataset_kwargs: {benchmark: <key>}``; ``tests/test_benchmarks.py`` checks that every YAML agrees
with its row (task name, group tag, split, metrics, generation length) and every group YAML with :data:`GROUPS`.

Adding a benchmark = one row here + one YAML in ``tasks/`` (+ a loader in :mod:`hrpo.data` if no existing one
reads it).

This module is plain data and imports nothing of the project or of lm-eval, so that everything may import it:
:mod:`hrpo.data` (loaders, split checks), ``tasks/utils.py``, :mod:`hrpo.leaderboard`.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "hrpo_"
"""lm-eval task name = this prefix + the benchmark key."""

QA_METRICS = ("exact_match", "f1", "format", "hedged")
"""What :func:`hrpo.rewards.eval_metrics` returns for open QA rows (``f1`` only there)."""
ANSWER_METRICS = ("exact_match", "format", "hedged")
"""What it returns for gsm8k, math and multiple-choice rows."""

PASSK_SUFFIX = "_passk"
"""The sampled pass@k variant of task ``hrpo_<key>`` is ``hrpo_<key>_passk`` (``tasks/hrpo_<key>_passk.yaml``)."""
PASSK_KS: tuple[int, ...] = (1, 2, 4, 8)
"""The k of the variants' ``pass@<k>`` metrics (Chen et al. 2021's unbiased estimator, :mod:`hrpo.passk`)."""
PASSK_REPEATS = 16
"""Samples per problem (lm-eval ``repeats``) of a variant by default; a k above the repeats is not reported."""
PASSK_METRICS: tuple[str, ...] = (*(f"pass@{k}" for k in PASSK_KS), "format", "hedged")
"""What a variant reports (format and hedged rates: means over all samples)."""


# The 57 subjects of the MMLU test set (Hendrycks et al. 2021), in file order of ../shared/data/mmlu/test.
MMLU_SUBJECTS: tuple[str, ...] = (
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine",
    "college_physics", "computer_security", "conceptual_physics", "econometrics", "electrical_engineering",
    "elementary_mathematics", "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry",
    "high_school_computer_science", "high_school_european_history", "high_school_geography",
    "high_school_government_and_politics", "high_school_macroeconomics", "high_school_mathematics",
    "high_school_microeconomics", "high_school_physics", "high_school_psychology", "high_school_statistics",
    "high_school_us_history", "high_school_world_history", "human_aging", "human_sexuality",
    "international_law", "jurisprudence", "logical_fallacies", "machine_learning", "management", "marketing",
    "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition", "philosophy",
    "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy",
    "virology", "world_religions",
)  # fmt: skip
"""``hrpo_mmlu`` reports ``exact_match_<subject>`` for each (tests check the list against the data files)."""


@dataclass(frozen=True)
class Group:
    """A group of benchmark columns: one of the paper's tables, an lm-eval group task and a task tag."""

    key: str
    title: str
    """Leaderboard group header."""
    short: str
    """Prefix of the group's average column (``"STEM avg"``)."""
    aggregate: tuple[str, ...]
    """Metrics the lm-eval group reports as the unweighted mean over its paper benchmarks."""
    paper_table: str
    """Where the paper reports the group (arXiv 2505.18454)."""

    @property
    def task_name(self) -> str:
        return PREFIX + self.key

    @property
    def tag(self) -> str:
        """The tag the group's paper benchmarks carry (``--tasks hrpo_stem_tasks`` runs them ungrouped)."""
        return f"{PREFIX}{self.key}_tasks"


GROUPS: dict[str, Group] = {
    "knowledge": Group("knowledge", "Knowledge (EM)", "Knowledge", ("exact_match", "f1"), "Table 1"),
    "stem": Group("stem", "STEM (accuracy)", "STEM", ("exact_match",), "Table 2"),
}


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: data source, prompt and scoring, and its leaderboard column."""

    key: str
    """Registry key, ``load_benchmark`` name, and the lm-eval task name without ``hrpo_``."""
    label: str
    """Leaderboard column label (the paper's column name where the paper has the benchmark)."""
    loader: str | None
    """``"<module>.<function>"`` in :mod:`hrpo.data`, called as ``f(split, data_dir=, policy=)``; ``None``: rows
    come from a jsonl named by the task metadata option ``<key>`` (``hrpo_qa_file``)."""
    splits: tuple[str, ...]
    eval_split: str
    """The split the paper reports on (and the lm-eval task's ``test_split``)."""
    prompt: str
    """Row ``task`` of the benchmark's rows: ``gsm8k``, ``math``, ``multiple_choice`` or ``qa``."""
    metrics: tuple[str, ...]
    """lm-eval metrics of the task (``metric_list``); the first is the leaderboard's."""
    group: str | None = None
    """Key of :data:`GROUPS` whose leaderboard columns (and task tag) it belongs to; ``None``: no fixed column."""
    paper: bool = False
    """One of the paper's benchmarks: a member of its group's lm-eval task, tag and average."""
    task: bool = True
    """There is an lm-eval task ``tasks/hrpo_<key>.yaml``."""
    max_gen_toks: int = 512
    """Generation budget of the task (the paper's Table 5: 512, 1024 for MATH-style problems)."""
    stock: tuple[tuple[str, str], ...] = ()
    """Stock lm-eval tasks scored into this column, ``(task, metric key)``; our ``hrpo_`` task wins a tie."""
    subjects: tuple[str, ...] = ()
    """Per-subject scores: the task also reports ``exact_match_<subject>`` for each, and ``macro_exact_match``
    (the unweighted mean over subjects) besides ``exact_match`` (the micro mean over all questions)."""
    passk: bool = False
    """There is also a sampled pass@k variant ``tasks/hrpo_<key>_passk.yaml`` (:data:`PASSK_METRICS`), which
    ``hrpo leaderboard --metric pass@<k>`` shows in this column."""

    @property
    def task_name(self) -> str:
        return PREFIX + self.key

    @property
    def passk_task_name(self) -> str | None:
        """``hrpo_<key>_passk``, or None without a pass@k variant."""
        return self.task_name + PASSK_SUFFIX if self.passk else None

    @property
    def subject_metrics(self) -> tuple[str, ...]:
        """``exact_match_<subject>`` per subject (empty without subjects)."""
        return tuple(f"{self.metrics[0]}_{s}" for s in self.subjects)

    @property
    def metric_key(self) -> str:
        """The results-file key of the leaderboard's metric (``exact_match,none``)."""
        return f"{self.metrics[0]},none"


def _stem(key, label, loader, splits, eval_split, prompt, **kw) -> Benchmark:
    return Benchmark(key, label, loader, splits, eval_split, prompt, ANSWER_METRICS, **kw)


def _qa(key, label, loader, splits, eval_split, **kw) -> Benchmark:
    return Benchmark(key, label, loader, splits, eval_split, "qa", QA_METRICS, **kw)


_PAPER_STEM = {"group": "stem", "paper": True}
_PAPER_KNOWLEDGE = {"group": "knowledge", "paper": True}

BENCHMARKS: dict[str, Benchmark] = {
    b.key: b
    for b in (
        _stem("gsm8k", "GSM8K", "stem.load_gsm8k", ("train", "test"), "test", "gsm8k", **_PAPER_STEM,
              stock=(("gsm8k", "exact_match,strict-match"),), passk=True),
        _stem("math", "MATH", "stem.load_math", ("train", "test"), "test", "math", **_PAPER_STEM,
              max_gen_toks=1024),
        _stem("math500", "MATH500", "stem.load_math500", ("test",), "test", "math", **_PAPER_STEM,
              max_gen_toks=1024, passk=True),
        _stem("mmlu_stem", "MMLU-ST", "stem.load_mmlu_stem", ("test",), "test", "multiple_choice",
              **_PAPER_STEM, stock=(("mmlu_stem", "acc,none"),)),
        # all 57 subjects (issue 16); its own column next to MMLU-ST, not one of the paper's five (no average)
        Benchmark("mmlu", "MMLU", "stem.load_mmlu", ("test", "val", "dev", "auxiliary_train"), "test",
                  "multiple_choice", (*ANSWER_METRICS, "macro_exact_match"), group="stem",
                  stock=(("mmlu", "acc,none"),), subjects=MMLU_SUBJECTS),
        _stem("arc_challenge", "ARC-C", "stem.load_arc_challenge", ("train", "dev", "test"), "test",
              "multiple_choice", **_PAPER_STEM, stock=(("arc_challenge", "acc_norm,none"),)),
        _qa("nq", "NQ", "qa.load_nq", ("train", "test"), "test", **_PAPER_KNOWLEDGE,
            stock=(("nq_open", "exact_match,remove_whitespace"),)),
        _qa("triviaqa", "TriviaQA", "qa.load_triviaqa", ("test",), "test", **_PAPER_KNOWLEDGE,
            stock=(("triviaqa", "exact_match,remove_whitespace"),)),
        _qa("hotpotqa", "HotpotQA", "qa.load_hotpotqa", ("train", "dev", "dev_ircot500"), "dev",
            **_PAPER_KNOWLEDGE),
        _qa("2wiki", "2Wiki", "qa.load_2wiki", ("dev",), "dev", **_PAPER_KNOWLEDGE),
        _qa("bamboogle", "Bamboogle", "qa.load_bamboogle", ("test",), "test", **_PAPER_KNOWLEDGE),
        # any local QA jsonl (metadata qa_file), scored like the knowledge tasks; an Other column
        _qa("qa_file", "qa_file", None, ("test",), "test"),
        # generated level-0 word problems (hrpo.data.arithmetic), the CPU recipe's trained skill: `hrpo demo`'s
        # held-out task (issue 12); 128 new tokens as in training; an Other column
        _stem("arithmetic", "Arithmetic", "stem.load_arithmetic", ("train", "test"), "test", "gsm8k",
              max_gen_toks=128),
    )
}  # fmt: skip


def get(key: str) -> Benchmark:
    """The row of ``key``; a KeyError listing the known keys otherwise."""
    if key not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {key!r}; known: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[key]


def check_split(key: str, split: str) -> None:
    """ValueError unless ``split`` is one of the registry's splits of ``key`` (the loaders call it first)."""
    allowed = get(key).splits
    if split not in allowed:
        raise ValueError(f"{key} has no split {split!r}; choose one of {', '.join(allowed)}")


def columns() -> tuple[Benchmark, ...]:
    """The leaderboard's fixed columns: rows with a group, in the order of :data:`GROUPS`, then of the table."""
    return tuple(b for g in GROUPS for b in BENCHMARKS.values() if b.group == g)


def members(group: str) -> tuple[Benchmark, ...]:
    """The paper's benchmarks of ``group``: the members of its lm-eval group task and of its average."""
    return tuple(b for b in BENCHMARKS.values() if b.group == group and b.paper)


def tasks() -> tuple[Benchmark, ...]:
    """Rows that have an lm-eval task in ``tasks/``."""
    return tuple(b for b in BENCHMARKS.values() if b.task)


def passk() -> tuple[Benchmark, ...]:
    """Rows that also have a sampled pass@k variant in ``tasks/`` (``hrpo_<key>_passk``)."""
    return tuple(b for b in BENCHMARKS.values() if b.passk)
