"""Open-domain QA loaders (the paper's knowledge tasks): NQ, TriviaQA, HotpotQA, 2WikiMultihopQA, Bamboogle.

Splits follow Search-R1/FlashRAG: NQ ``test`` (= NQ-open dev, 3,610), TriviaQA ``test``, HotpotQA ``dev``,
2Wiki ``dev``, Bamboogle ``test``; NQ and HotpotQA also have ``train`` (the RAG training mix). The hub source is
``RUC-NLPIR/FlashRAG_datasets``; local files are the formats in ``../shared/data`` (NQ-open jsonl, FlashRAG jsonl,
question/answer JSON lists, the official HotpotQA/2Wiki JSON, IRCoT jsonl with paragraphs).

``gold`` is always the list of answer aliases; ``contexts`` (``"Title"\\ntext`` strings) is kept when the file
has passages (FlashRAG rows with ``contexts``, IRCoT paragraphs); retrieval adds it otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from hrpo.benchmarks import check_split
from hrpo.data.rows import BadRowPolicy, Row, RowError, need_aliases, read_json_list, read_jsonl
from hrpo.data.sources import fetch

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike | None
FLASHRAG = "RUC-NLPIR/FlashRAG_datasets"
FLASHRAG_FMT = "FlashRAG jsonl {id, question, golden_answers}"


def format_passage(title: str, text: str) -> str:
    """A passage in wiki-18 ``contents`` form: the title in double quotes, a newline, the text."""
    return f'"{title.strip()}"\n{text.strip()}'


def _contexts(raw: dict) -> list[str] | None:
    ctx = raw.get("contexts")
    if ctx is None:
        return None
    if not isinstance(ctx, list):
        raise RowError("field 'contexts' must be a list")
    out: list[str] = []
    for c in ctx:
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, dict):  # IRCoT/FlashRAG passage objects
            text = c.get("paragraph_text", c.get("text", c.get("contents")))
            if not isinstance(text, str):
                raise RowError("a context object has no 'paragraph_text'/'text'/'contents' string")
            out.append(format_passage(str(c.get("title", "")), text) if "title" in c else text)
        else:
            raise RowError("contexts must be strings or {title, text} objects")
    return out


def _qa_row(prefix: str):
    """Converter for every QA format: FlashRAG, NQ-open, question/answer lists, official HotpotQA/2Wiki, IRCoT."""

    def convert(raw: Any, index: int) -> Row:
        if not isinstance(raw, dict):
            raise RowError(f"expected a JSON object, got {type(raw).__name__}")
        question = raw.get("question", raw.get("question_text"))
        if not isinstance(question, str) or not question.strip():
            raise RowError("missing or empty field 'question'")
        if "golden_answers" in raw:
            gold = need_aliases(raw["golden_answers"], "golden_answers")
        elif "answers_objects" in raw:  # IRCoT: [{spans: [...]}]
            spans = [s for obj in raw["answers_objects"] or [] for s in (obj.get("spans") or [])]
            gold = need_aliases(spans, "answers_objects")
        else:
            gold = need_aliases(raw.get("answer"), "answer")
        ident = raw.get("id", raw.get("_id", raw.get("question_id")))
        row: Row = {
            "id": f"{prefix}/{ident}" if ident not in (None, "") else f"{prefix}/{index}",
            "question": question,
            "gold": gold,
            "task": "qa",
        }
        contexts = _contexts(raw)
        if contexts is not None:
            row["contexts"] = contexts
        return row

    return convert


def _fetch_qa(
    prefix: str,
    local: list[str],
    fmt: str,
    read: Callable[..., list[Row]],
    hub: tuple[str, str, str] | None,
    data_dir: PathLike,
    policy: BadRowPolicy | None,
) -> list[Row]:
    """:func:`~hrpo.data.sources.fetch` with the QA converter (ids ``<prefix>/<id>``); ``hub`` = FlashRAG
    ``(path, config, split)`` or ``None`` (local only)."""
    return fetch(data_dir=data_dir, local=local, fmt=fmt, read=read, convert_local=_qa_row(prefix), hub=hub,
                 policy=policy)  # fmt: skip


def load_nq(split: str = "test", data_dir: PathLike = None, policy: BadRowPolicy | None = None) -> list[Row]:
    """Natural Questions (open): ``test`` = NQ-open dev (3,610), ``train`` = NQ-open train (79,168)."""
    check_split("nq", split)
    local = {"test": "nq_open/NQ-open.dev.jsonl", "train": "nq_open/NQ-open.train.jsonl"}[split]
    fmt = "NQ-open jsonl {question, answer: [...]} or FlashRAG jsonl"
    return _fetch_qa(f"nq/{split}", [local, f"nq/{split}.jsonl"], fmt, read_jsonl, (FLASHRAG, "nq", split),
                     data_dir, policy)  # fmt: skip


def load_triviaqa(
    split: str = "test", data_dir: PathLike = None, policy: BadRowPolicy | None = None
) -> list[Row]:
    """TriviaQA ``test`` as in FlashRAG (11,313; unfiltered dev). Locally the 1,000-question subset is used
    when the full ``triviaqa/test.jsonl`` is absent (a warning says so)."""
    check_split("triviaqa", split)
    local = ["triviaqa/test.jsonl", "triviaqa/test_subsample1000.jsonl"]
    rows = _fetch_qa("triviaqa/test", local, FLASHRAG_FMT, read_jsonl, (FLASHRAG, "triviaqa", "test"),
                     data_dir, policy)  # fmt: skip
    if len(rows) < 11313:
        logger.warning("TriviaQA: only %d questions (the local file is a subset of the 11,313)", len(rows))
    return rows


def load_hotpotqa(
    split: str = "dev", data_dir: PathLike = None, policy: BadRowPolicy | None = None
) -> list[Row]:
    """HotpotQA ``dev`` (7,405, distractor dev), ``train`` (90,447) or ``dev_ircot500`` (IRCoT's 500 with
    their 10 paragraphs as ``contexts``)."""
    check_split("hotpotqa", split)
    if split == "dev_ircot500":
        local = ["hotpotqa/ircot_dev_subsampled_500.jsonl"]
        return _fetch_qa("hotpotqa/dev", local, "IRCoT jsonl", read_jsonl, None, data_dir, policy)
    local = {
        "dev": ["hotpotqa/hotpotqa_dev_questions_and_answers.json", "hotpotqa/hotpot_dev_distractor_v1.json"],
        "train": ["hotpotqa/hotpot_train_v1.1.json", "hotpotqa/hotpotqa_train_questions_and_answers.json"],
    }[split]
    fmt = "JSON list of {question, answer} (official HotpotQA JSON works too)"
    return _fetch_qa(f"hotpotqa/{split}", local, fmt, read_json_list, (FLASHRAG, "hotpotqa", split),
                     data_dir, policy)  # fmt: skip


def load_2wiki(
    split: str = "dev", data_dir: PathLike = None, policy: BadRowPolicy | None = None
) -> list[Row]:
    """2WikiMultihopQA ``dev`` (12,576)."""
    check_split("2wiki", split)
    local = ["2wikimultihopqa/2wikimultihopqa_dev_questions_and_answers.json", "2wikimultihopqa/dev.json"]
    fmt = "JSON list of {question, answer} (official 2Wiki dev.json works too)"
    return _fetch_qa("2wiki/dev", local, fmt, read_json_list, (FLASHRAG, "2wikimultihopqa", "dev"),
                     data_dir, policy)  # fmt: skip


def load_bamboogle(
    split: str = "test", data_dir: PathLike = None, policy: BadRowPolicy | None = None
) -> list[Row]:
    """Bamboogle ``test`` (125, FlashRAG format; some answers are lower-cased as in FlashRAG)."""
    check_split("bamboogle", split)
    return _fetch_qa("bamboogle", ["bamboogle/test.jsonl"], FLASHRAG_FMT, read_jsonl,
                     (FLASHRAG, "bamboogle", "test"), data_dir, policy)  # fmt: skip
