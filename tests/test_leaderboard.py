"""``hrpo leaderboard`` on real lm-eval results files (tests/fixtures/leaderboard, see make_fixtures.py there)."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from hrpo import benchmarks
from hrpo import leaderboard as lb
from hrpo import leaderboard_render as lbr
from hrpo.cli import main as cli_main
from tests.conftest import REPO_ROOT

FIX = REPO_ROOT / "tests" / "fixtures" / "leaderboard"
STEM = [b.key for b in benchmarks.members("stem")]  # the paper's five per group (tests/test_benchmarks.py)
KNOWLEDGE = [b.key for b in benchmarks.members("knowledge")]
HEADER = [*lb.META_COLUMNS, *(label for _, _, label in lb.score_columns())]


def _results(name: str) -> tuple[Path, dict]:
    (path,) = (FIX / name).glob("results_*.json")
    return path, json.loads(path.read_text())


def _copy_fixtures(tmp_path: Path) -> Path:
    dest = tmp_path / "fx"
    shutil.copytree(FIX, dest, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return dest


def _md_rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split(" | ")]
    assert header == HEADER
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split(" | ")), strict=True))
        for line in lines[1:]
    ]


@pytest.fixture
def runs(monkeypatch, tmp_path) -> dict[str, lb.Run]:
    monkeypatch.chdir(tmp_path)  # checkpoint paths must resolve against the results files, not the cwd
    rows = lb.load_runs([FIX / "ours", FIX / "stock"])
    return {r.label: r for r in rows}


HRPO = "qwen2.5-1.5b-hrpo-rmin0.99-temp0.5 [limit 8]"
HRPO_OFF = "qwen2.5-1.5b-hrpo-rmin0.99-temp0.5 [latent off] [limit 8]"
GRPO = "qwen2.5-1.5b-grpo-temp0.5 [limit 8]"
BASE = "Qwen2.5-1.5B-Instruct [limit 8]"


def test_ours_rows_metadata_from_checkpoint_files(runs):
    assert set(runs) == {HRPO, HRPO_OFF, GRPO, BASE}
    hrpo = runs[HRPO]  # hrpo-stem + hrpo-knowledge: the same run, merged into one row
    assert (hrpo.model, hrpo.method, hrpo.tau, hrpo.r_min, hrpo.seed) == (
        "Qwen2.5-1.5B-Instruct",
        "HRPO",
        0.5,
        0.99,
        42,
    )
    assert hrpo.decoding == "greedy+latent"
    assert len(hrpo.files) == 2
    assert set(hrpo.scores) == set(STEM) | {"nq", "triviaqa", "bamboogle"}
    _, knowledge = _results("ours/hrpo-knowledge")
    assert hrpo.date == lb._date(knowledge, Path("x"))[0]  # newest of the merged files
    off = runs[HRPO_OFF]
    assert (off.method, off.decoding, set(off.scores)) == ("HRPO", "greedy", {"gsm8k", "math500"})
    grpo = runs[GRPO]  # --model hf on a folder with hrpo_run.json (hybrid false)
    assert (grpo.method, grpo.tau, grpo.r_min, grpo.seed, grpo.decoding) == ("GRPO", 0.5, None, 7, "greedy")
    base = runs[BASE]
    assert (base.method, base.model, base.tau, base.seed) == ("base", "Qwen2.5-1.5B-Instruct", None, None)


def test_scores_and_stderr_come_from_the_right_metric(runs):
    _, stem = _results("ours/hrpo-stem")
    gsm = stem["results"]["hrpo_gsm8k"]
    assert runs[HRPO].scores["gsm8k"] == lb.Score(gsm["exact_match,none"], gsm["exact_match_stderr,none"])
    _, stock = _results("stock/qwen2.5-1.5b-base")
    base = runs[BASE].scores
    assert base["arc_challenge"].value == stock["results"]["arc_challenge"]["acc_norm,none"]
    assert base["nq"].value == stock["results"]["nq_open"]["exact_match,remove_whitespace"]
    assert base["triviaqa"].stderr == stock["results"]["triviaqa"]["exact_match_stderr,remove_whitespace"]
    assert base["mmlu_stem"] == lb.Score(0.4625, 0.0279)
    assert set(base) == {"gsm8k", "arc_challenge", "mmlu_stem", "nq", "triviaqa"}


def test_stock_metric_choice_strict_match_and_acc_norm():
    _, data = _results("stock/qwen2.5-1.5b-base")
    data["results"]["gsm8k"]["exact_match,flexible-extract"] = 0.99
    data["results"]["arc_challenge"]["acc,none"] = 0.01
    data["results"]["hrpo_gsm8k"] = {"exact_match,none": 0.2, "exact_match_stderr,none": "N/A"}
    scores = lb.read_scores(data)
    assert scores["gsm8k"] == lb.Score(0.2, None)  # our task wins over the stock one; "N/A" stderr = none
    del data["results"]["hrpo_gsm8k"]
    scores = lb.read_scores(data)
    assert scores["gsm8k"].value == data["results"]["gsm8k"]["exact_match,strict-match"] != 0.99
    assert scores["arc_challenge"].value == data["results"]["arc_challenge"]["acc_norm,none"] != 0.01


def test_group_average_only_when_all_five_present(runs):
    hrpo = runs[HRPO]
    avg = hrpo.average("stem")
    values = [hrpo.scores[k] for k in STEM]
    assert avg is not None and math.isclose(avg.value, sum(s.value for s in values) / 5)
    assert math.isclose(avg.stderr, math.sqrt(sum(s.stderr**2 for s in values)) / 5)
    assert hrpo.average("knowledge") is None  # 3 of 5 knowledge benchmarks
    assert runs[BASE].average("stem") is None  # no MATH / MATH500
    assert runs[BASE].average("knowledge") is None
    one_less = lb.Run("x", "m", "base", scores={k: lb.Score(0.5, 0.1) for k in STEM[:4]})
    assert one_less.average("stem") is None
    assert one_less.average("knowledge") is None


def test_markdown_missing_cells_never_zero_and_stderr_shown(runs):
    rows = {r["run"]: r for r in _md_rows(lbr.render(list(runs.values()), "md"))}
    hrpo = rows[HRPO]
    assert hrpo["GSM8K"] == "62.5 ± 18.3"
    assert hrpo["STEM avg"] == "55.0 ± 7.7"
    assert hrpo["HotpotQA"] == hrpo["2Wiki"] == hrpo["Knowledge avg"] == "–"
    assert (hrpo["τ"], hrpo["r_min"], hrpo["seed"], hrpo["decoding"]) == (
        "0.5",
        "0.99",
        "42",
        "greedy+latent",
    )
    base = rows[BASE]
    assert base["MATH"] == base["STEM avg"] == "–"
    assert base["MMLU-ST"] == "46.2 ± 2.8"
    assert base["τ"] == base["r_min"] == base["seed"] == "–"
    assert not any(cell.startswith("0.0") for row in rows.values() for cell in row.values())


def test_a_real_zero_is_shown_as_zero_not_missing(tmp_path):
    root = _copy_fixtures(tmp_path)
    path, data = _results("ours/hrpo-latent-off")
    data["results"]["hrpo_gsm8k"].update({"exact_match,none": 0.0, "exact_match_stderr,none": 0.0})
    (root / "ours" / "hrpo-latent-off" / path.name).write_text(json.dumps(data))
    (row,) = _md_rows(lbr.render(lb.load_runs([root / "ours" / "hrpo-latent-off"]), "md"))
    assert (row["GSM8K"], row["MATH"]) == ("0.0 ± 0.0", "–")


def test_csv_parses_with_empty_missing_and_stderr_columns(runs):
    table = list(csv.DictReader(io.StringIO(lbr.render(list(runs.values()), "csv"))))
    assert len(table) == 4
    hrpo = next(r for r in table if r["run"] == HRPO)
    assert (hrpo["GSM8K"], hrpo["GSM8K stderr"]) == ("62.50", "18.30")
    assert hrpo["HotpotQA"] == hrpo["HotpotQA stderr"] == hrpo["Knowledge avg"] == ""
    assert float(hrpo["STEM avg"]) == pytest.approx(55.0)
    assert (hrpo["tau"], hrpo["r_min"], hrpo["method"], hrpo["reference"]) == ("0.5", "0.99", "HRPO", "no")
    base = next(r for r in table if r["run"] == BASE)
    assert base["seed"] == "" and base["MATH"] == ""


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.head: list[list[tuple[str, int]]] = []
        self._cell: list[str] | None = None
        self._span = 1

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr":
            self.rows.append((attrs.get("class") or "head", []))
        elif tag in ("td", "th"):
            self._cell, self._span = [], int(attrs.get("colspan") or 1)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_html_table_parses_and_marks_reference_rows(runs):
    refs = lb.load_references(["qwen2.5-1.5b"])
    text = lbr.render([*runs.values(), *refs], "html")
    parser = _Cells()
    parser.feed(text)
    head = [r for r in parser.rows if r[0] == "head"]
    body = [r for r in parser.rows if r[0] != "head"]
    assert head[1][1] == HEADER
    assert "Knowledge (EM), %" in head[0][1] and "STEM (accuracy), %" in head[0][1]
    assert [cls for cls, _ in body].count("reference") == len(refs) == 9
    assert all(len(cells) == len(HEADER) for _, cells in body)
    by_run = {cells[0]: dict(zip(HEADER, cells, strict=True)) for cls, cells in body if cls == "run"}
    assert by_run[HRPO]["GSM8K"] == "62.5 ± 18.3"
    assert by_run[HRPO]["HotpotQA"] == "–"
    best = next(dict(zip(HEADER, c, strict=True)) for cls, c in body if cls == "reference" and "best" in c[0])
    assert (best["GSM8K"], best["Knowledge avg"], best["STEM avg"]) == ("72.0", "33.7", "61.7")
    assert "best over the r_min/τ sweep" in text


def test_latex_table_shape_escapes_and_missing(runs):
    text = lbr.render([*runs.values(), *lb.load_references(["qwen2.5-3b:main"])], "latex")
    spec = text.split("\\begin{tabular}{", 1)[1].split("}", 1)[0]
    n_cols = len(spec.replace("|", ""))
    assert n_cols == len(HEADER)
    body = text.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
    rows = [line for line in body.splitlines() if line.endswith("\\\\")]
    assert len(rows) == 4 + 6
    assert all(len(r.split(" & ")) == n_cols for r in rows)
    assert "r\\_min" in text and "$\\tau$" in text and "\\multicolumn{6}{c}{Knowledge (EM), \\%}" in text
    hrpo = next(r for r in rows if r.startswith("qwen2.5-1.5b-hrpo-rmin0.99-temp0.5 [limit 8]"))
    assert "62.5{\\tiny$\\pm$18.3}" in hrpo and " -- " in hrpo
    assert "\\textit{ref P-T1+P-T2 (best of sweep)}" in text
    assert text.count("{") == text.count("}")


def test_reference_rows_from_the_paper_file():
    data = lb.paper_results()
    assert (
        data["source"]["arxiv"] == "2505.18454"
        and "best over the r_min/tau sweep" in data["source"]["caveat"]
    )
    main = lb.load_references(["qwen2.5-1.5b:main"])
    assert [r.method for r in main] == ["SFT", "RAG", "Distilled CoT", "PPO", "GRPO", "HRPO"]
    assert all(r.reference and r.model == "Qwen2.5-1.5B-Instruct" for r in main)
    hrpo = main[-1]
    assert hrpo.scores["gsm8k"].value == 0.720 and hrpo.scores["bamboogle"].value == 0.216
    assert hrpo.average("stem") == lb.Score(0.617) and "best of sweep" in hrpo.label
    rag, distilled = main[1], main[2]
    assert rag.average("stem") is None and distilled.average("stem") is None
    assert "math500" not in distilled.scores  # missing in the paper stays missing
    both = lb.load_references(["qwen2.5-1.5b"])  # default: main tables + the Lambda-init sweep (P-T3)
    sweep = [r for r in both if "P-T3" in r.label]
    assert [r.r_min for r in sweep] == [0.95, 0.98, 0.99]
    assert [r.scores["gsm8k"].value for r in sweep] == [0.705, 0.703, 0.720]
    tau = lb.load_references(["qwen2.5-3b:tau"])
    assert [r.tau for r in tau] == [0.3, 0.5, 0.7, 0.9] and tau[2].scores["gsm8k"].value == 0.845
    assert tau[0].average("stem") is not None  # all five present: computed
    t7 = lb.load_references(["qwen2.5-3b:lambda"])
    assert t7[0].scores["gsm8k"].value == 0.845 and t7[0].scores["nq"].value == 0.367  # re-labelled P-T7
    with pytest.raises(lb.LeaderboardError, match="unknown reference"):
        lb.load_references(["qwen2.5-7b"])


def test_paper_file_printed_averages_match_the_five_scores():
    for ref in lb.paper_results()["references"].values():
        for block in ref["sets"].values():
            for row in block["rows"]:
                for group, keys in (("knowledge", KNOWLEDGE), ("stem", STEM)):
                    if group in (row.get("printed_avg") or {}):
                        mean = sum(row["scores"][k] for k in keys) / 5
                        assert abs(mean - row["printed_avg"][group]) <= 0.0015, (row, group)


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


def test_cli_writes_table_and_plot(tmp_path, capsys):
    out, png = tmp_path / "t" / "board.html", tmp_path / "board.png"
    code = cli_main(["leaderboard", str(FIX / "ours"), str(FIX / "stock"), "--reference", "qwen2.5-1.5b",
                     "--out", str(out), "--plot", str(png)])  # fmt: skip
    assert code == 0
    assert out.read_text().startswith("<!DOCTYPE html>")  # format from the suffix
    width, height = _png_size(png)
    assert width > 1000 and height > 500
    assert capsys.readouterr().out == ""
    assert cli_main(["leaderboard", str(FIX / "stock"), "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["run"] for r in table] == [BASE]


def test_cli_errors(tmp_path, capsys):
    assert cli_main(["leaderboard", str(tmp_path / "nope")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "results_x.json"
    bad.write_text(json.dumps({"hello": 1}))
    assert cli_main(["leaderboard", str(bad)]) == 2
    assert "not an lm-eval results file" in capsys.readouterr().err
    assert cli_main(["leaderboard", str(FIX / "stock"), "--reference", "gpt-9"]) == 2
    assert "known: qwen2.5-1.5b" in capsys.readouterr().err


def test_string_model_args_and_absolute_checkpoint(tmp_path):
    root = _copy_fixtures(tmp_path)
    path, data = _results("ours/grpo-hf")
    ckpt = root / "checkpoints" / "qwen2.5-1.5b-grpo-temp0.5"
    data["config"]["model_args"] = f"pretrained={ckpt},dtype=bfloat16"  # older lm-eval: a string
    target = tmp_path / "elsewhere" / path.name
    target.parent.mkdir()
    target.write_text(json.dumps(data))
    (run,) = lb.load_runs([target])
    assert (run.method, run.seed, run.label) == ("GRPO", 7, "qwen2.5-1.5b-grpo-temp0.5 [limit 8]")
    data["config"]["model_args"] = "pretrained=/no/such/dir,method=GRPO,tau=0.7"  # explicit keys
    target.write_text(json.dumps(data))
    (run,) = lb.load_runs([target])
    assert (run.method, run.tau, run.seed) == ("GRPO", 0.7, None)


def test_script_and_module_entry_points(tmp_path):
    for cmd in ([sys.executable, str(REPO_ROOT / "benchmark" / "leaderboard.py")],
                [sys.executable, "-m", "hrpo.cli", "leaderboard"]):  # fmt: skip
        proc = subprocess.run([*cmd, str(FIX / "stock"), "--format", "md"], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert _md_rows(proc.stdout)[0]["GSM8K"] == "37.5 ± 18.3"


# ---------------------------------------------------------------------------------------------- Other columns
# tests/fixtures/leaderboard/other: hrpo_qa_file for the HRPO checkpoint (merges into its row) and the stock
# gsm8k_cot (an arbitrary task outside the paper's ten) for the base model (merges into the base row)

OTHER_HEADER = [*HEADER, "gsm8k_cot", "qa_file"]  # after STEM avg, sorted by label, no "Other avg"
REFS = "qwen2.5-1.5b:main"


@pytest.fixture
def other_runs(monkeypatch, tmp_path) -> list[lb.Run]:
    monkeypatch.chdir(tmp_path)
    return [*lb.load_runs([FIX / "ours", FIX / "stock", FIX / "other"]), *lb.load_references([REFS])]


def _rows(text: str, header: list[str]) -> dict[str, dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert [c.strip() for c in lines[0].strip("|").split(" | ")] == header
    rows = [
        dict(zip(header, (c.strip() for c in line.strip("|").split(" | ")), strict=True))
        for line in lines[1:]
    ]
    return {r["run"]: r for r in rows if not r["run"].startswith("ref ")}


def test_other_scores_from_the_fixture_results_files():
    _, qa = _results("other/hrpo-qa-file")
    entry = qa["results"]["hrpo_qa_file"]
    assert {"f1,none", "format,none"} <= set(entry)  # reported too, but exact_match is the column's metric
    assert lb.read_scores(qa) == {
        "other:hrpo_qa_file": lb.Score(
            entry["exact_match,none"], entry["exact_match_stderr,none"], "exact_match,none"
        )
    }
    _, cot = _results("other/base-gsm8k-cot")
    entry = cot["results"]["gsm8k_cot"]  # no exact_match,none: the first metric with a stderr (strict-match)
    assert entry["exact_match,strict-match"] == 0.0 != entry["exact_match,flexible-extract"]
    assert lb.read_scores(cot) == {"other:gsm8k_cot": lb.Score(0.0, 0.0, "exact_match,strict-match")}
    for name in ("ours/hrpo-stem", "ours/hrpo-knowledge", "stock/qwen2.5-1.5b-base"):  # groups / mapped tasks
        assert not [k for k in lb.read_scores(_results(name)[1]) if k.startswith(lb.OTHER_PREFIX)], name


def test_other_metric_choice():
    pick = lb.other_metric
    entry = {"alias": "t", "sample_len": 8, "f1,none": 0.3, "f1_stderr,none": 0.1, "exact_match,none": 0.2,
             "exact_match_stderr,none": 0.1}  # fmt: skip
    assert pick(entry) == "exact_match,none"  # preferred even when not the first metric
    assert pick({"alias": "t", "acc,none": 0.5, "bleu,none": 0.2, "bleu_stderr,none": 0.01}) == "bleu,none"
    assert pick({"exact_match,none": "N/A", "acc,none": 0.5, "acc_stderr,none": "N/A"}) == "acc,none"
    assert pick({"alias": "t", "acc,none": 0.5, "sample_count": {"acc,none": 8}}) is None  # no stderr key
    assert pick({"alias": "group without aggregation"}) is None
    data = {"results": {"boolq": {"acc,none": 0.5, "acc_stderr,none": "N/A"}}}
    assert lb.read_scores(data) == {"other:boolq": lb.Score(0.5, None, "acc,none")}  # "N/A" = no stderr


def test_other_skips_groups_mapped_tasks_and_members_of_mapped_groups():
    _, data = _results("stock/qwen2.5-1.5b-base")
    res = data["results"]
    res["mmlu_anatomy"] = {"acc,none": 0.4, "acc_stderr,none": 0.1}  # a member of the mapped mmlu_stem group
    res["nested"] = {"acc,none": 0.4, "acc_stderr,none": 0.1}  # member of a subgroup of mmlu_stem
    res["mmlu_sub"] = {"alias": "sub", "acc,none": 0.4, "acc_stderr,none": 0.1}
    data["group_subtasks"].update(mmlu_stem=["mmlu_anatomy", "mmlu_sub"], mmlu_sub=["nested"])
    # an unmapped group: its entry is skipped, its members get columns
    res["my_suite"] = data["groups"]["my_suite"] = {"acc,none": 0.9, "acc_stderr,none": 0.05}
    res["boolq"] = {"alias": " - boolq", "acc,none": 0.6, "acc_stderr,none": 0.1}
    res["sciq"] = {"alias": " - sciq", "acc_norm,none": 0.7, "acc_norm_stderr,none": 0.1}
    data["group_subtasks"]["my_suite"] = ["boolq", "sciq"]
    res["hrpo_qa_file"] = {"exact_match,none": 0.3, "exact_match_stderr,none": 0.1}
    # older lm-eval versions list plain tasks here with no subtasks: not a group
    data["group_subtasks"]["hrpo_qa_file"] = []
    scores = lb.read_scores(data)
    other = {k: s for k, s in scores.items() if k.startswith(lb.OTHER_PREFIX)}
    assert other == {
        "other:boolq": lb.Score(0.6, 0.1, "acc,none"),
        "other:sciq": lb.Score(0.7, 0.1, "acc_norm,none"),
        "other:hrpo_qa_file": lb.Score(0.3, 0.1, "exact_match,none"),
    }
    assert {k for k in scores if k not in other} == {"gsm8k", "arc_challenge", "mmlu_stem", "nq", "triviaqa"}


@pytest.mark.parametrize("fmt", ["md", "tex", "csv", "html"])
def test_tables_without_other_tasks_are_byte_identical_to_before(monkeypatch, tmp_path, fmt):
    """golden/paper_only.* were written by the leaderboard before the Other columns existed (commit 339f0b1) and
    rewritten by make_fixtures.py golden when the MMLU column came (every other cell unchanged)."""
    monkeypatch.chdir(tmp_path)
    runs = [*lb.load_runs([FIX / "ours", FIX / "stock"]), *lb.load_references(["qwen2.5-1.5b"])]
    assert lb.score_columns(runs) == lb.score_columns()
    golden = (FIX / "golden" / f"paper_only.{fmt}").read_text()
    assert lbr.render(runs, {"tex": "latex"}.get(fmt, fmt)) == golden
    assert "Other" not in golden


def test_other_columns_in_markdown_missing_never_zero(other_runs):
    text = lbr.render(other_runs, "md")
    rows = _rows(text, OTHER_HEADER)
    assert set(rows) == {HRPO, HRPO_OFF, GRPO, BASE}
    assert (rows[HRPO]["qa_file"], rows[HRPO]["gsm8k_cot"]) == ("25.0 ± 16.4", "–")
    assert (rows[BASE]["qa_file"], rows[BASE]["gsm8k_cot"]) == ("–", "0.0 ± 0.0")  # a real zero stays 0.0
    assert rows[GRPO]["qa_file"] == rows[GRPO]["gsm8k_cot"] == rows[HRPO_OFF]["qa_file"] == "–"
    # the paper's columns and averages are untouched by the merged Other files
    assert (rows[HRPO]["GSM8K"], rows[HRPO]["STEM avg"], rows[HRPO]["Knowledge avg"]) == (
        "62.5 ± 18.3",
        "55.0 ± 7.7",
        "–",
    )
    assert rows[BASE]["MMLU-ST"] == "46.2 ± 2.8" and rows[BASE]["STEM avg"] == "–"
    refs = [line for line in text.splitlines() if line.startswith("| ref ")]
    assert len(refs) == 6 and all(line.endswith("| – | – |") for line in refs)
    assert "**Other, %**: gsm8k_cot, qa_file (no avg)" in text.splitlines()[0]
    assert "gsm8k_cot = exact_match,strict-match, qa_file = exact_match,none." in text
    hrpo = next(r for r in other_runs if r.label == HRPO)
    assert len(hrpo.files) == 3 and hrpo.average("stem") == next(
        r for r in lb.load_runs([FIX / "ours"]) if r.label == HRPO
    ).average("stem")


def test_other_columns_in_csv_html_latex_consistent(other_runs):
    table = list(csv.DictReader(io.StringIO(lbr.render(other_runs, "csv"))))
    assert list(table[0])[-4:] == ["gsm8k_cot", "gsm8k_cot stderr", "qa_file", "qa_file stderr"]
    by_run = {r["run"]: r for r in table}
    assert (by_run[HRPO]["qa_file"], by_run[HRPO]["qa_file stderr"]) == ("25.00", "16.37")
    assert by_run[HRPO]["gsm8k_cot"] == by_run[HRPO]["gsm8k_cot stderr"] == ""
    assert (by_run[BASE]["gsm8k_cot"], by_run[BASE]["qa_file"]) == ("0.00", "")
    assert all(r["qa_file"] == r["gsm8k_cot"] == "" for r in table if r["reference"] == "yes")

    parser = _Cells()
    parser.feed(lbr.render(other_runs, "html"))
    head = [cells for cls, cells in parser.rows if cls == "head"]
    assert head[0][-1] == "Other, %" and head[1] == OTHER_HEADER
    body = {
        cells[0]: dict(zip(OTHER_HEADER, cells, strict=True)) for cls, cells in parser.rows if cls == "run"
    }
    assert (body[HRPO]["qa_file"], body[HRPO]["gsm8k_cot"], body[BASE]["gsm8k_cot"]) == (
        "25.0 ± 16.4",
        "–",
        "0.0 ± 0.0",
    )
    html_text = lbr.render(other_runs, "html")
    assert '<th colspan="2">Other, %</th>' in html_text and "qa_file = exact_match,none" in html_text

    text = lbr.render(other_runs, "latex")
    spec = text.split("\\begin{tabular}{", 1)[1].split("}", 1)[0]
    widths = [sum(g == group for g, _, _ in lb.score_columns()) for group in lb.GROUPS]
    assert spec.endswith("".join("|" + "r" * w for w in widths) + "|rr")  # each group + its avg, then Other
    assert len(spec.replace("|", "")) == len(OTHER_HEADER)
    other = f"{len(HEADER) + 1}-{len(HEADER) + 2}"  # the two Other columns follow the fixed ones
    assert "\\multicolumn{2}{c}{Other, \\%}" in text and f"\\cmidrule(lr){{{other}}}" in text
    assert "& gsm8k\\_cot & qa\\_file \\\\" in text
    body = text.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
    rows = [line for line in body.splitlines() if line.endswith("\\\\")]
    assert len(rows) == 4 + 6 and all(len(r.split(" & ")) == len(OTHER_HEADER) for r in rows)
    hrpo = next(r for r in rows if r.startswith(HRPO)).split(" & ")
    assert hrpo[-2:] == ["--", "25.0{\\tiny$\\pm$16.4} \\\\"]
    assert text.count("{") == text.count("}")


def test_other_columns_only_when_some_row_has_one():
    stem = {k: lb.Score(0.5, 0.1) for k in STEM}
    plain = lb.Run("plain", "m", "base", scores=dict(stem))
    extra = lb.Run(
        "extra", "m", "base", scores={**stem, "other:hrpo_qa_file": lb.Score(0.4, None, "f1,none")}
    )
    assert lb.score_columns([plain]) == lb.score_columns()
    cols = lb.score_columns([plain, extra])
    assert cols[:-1] == lb.score_columns() and cols[-1] == ("other", "other:hrpo_qa_file", "qa_file")
    assert extra.average("stem") == plain.average("stem")  # Other scores never enter a group average
    (row,) = (
        r
        for r in _rows(lbr.render([plain, extra], "md"), [*HEADER, "qa_file"]).values()
        if r["run"] == "plain"
    )
    assert row["qa_file"] == "–"
    assert "qa_file = f1,none" in lbr.render([plain, extra], "md")


def test_other_column_labels_strip_hrpo_and_stay_unique():
    score = lb.Score(0.5, 0.1, "acc,none")
    tasks = ["hrpo_qa_file", "zeta", "hrpo_foo", "foo", "hrpo_date", "date"]
    run = lb.Run("r", "m", "base", scores={lb.OTHER_PREFIX + t: score for t in tasks})
    labels = lb.other_columns([run])
    # sorted by label; a label already taken (by another task or a column) becomes the full task name
    assert list(labels.items()) == [
        ("other:foo", "foo"),
        ("other:hrpo_date", "hrpo_date"),
        ("other:hrpo_foo", "hrpo_foo"),
        ("other:date", "other:date"),  # "date" is a meta column and the full name too
        ("other:hrpo_qa_file", "qa_file"),
        ("other:zeta", "zeta"),
    ]
    header = [*HEADER, *labels.values()]
    assert len(set(header)) == len(header)
    names = next(csv.reader(io.StringIO(lbr.render([run], "csv"))))
    assert len(set(names)) == len(names)


def test_plot_shows_other_columns(monkeypatch, other_runs, tmp_path):
    import matplotlib.figure

    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: saved.append(fig))
    lbr.plot(other_runs, tmp_path / "board.png")
    (ax,) = saved[0].axes
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert len(ticks) == len(lb.score_columns()) + 2 and ticks[-3:] == ["STEM\navg", "gsm8k_cot", "qa_file"]
    texts = [t.get_text() for t in ax.texts]
    assert {"Knowledge (EM)", "STEM (accuracy)", "Other"} <= set(texts)
    n_missing = sum(
        lb.cell_score(run, g, k) is None for run in other_runs for g, k, _ in lb.score_columns(other_runs)
    )
    assert texts.count("–") == n_missing  # every missing cell, Other included, is marked, never drawn as 0
    assert texts.count("0") == 1  # the base model's real 0 on gsm8k_cot
    other_x = [t.get_position()[0] for t in ax.get_xticklabels()[-2:]]
    group_lines = [line.get_xdata()[0] for line in ax.lines if list(line.get_ydata()) == [0, 1]]  # axvline
    # Knowledge | STEM and STEM | Other: the Other ticks sit right of both
    assert len(group_lines) == 2 and max(group_lines) < min(other_x)
    assert "Other" in ax.get_title()


def test_render_module_imports_and_cli_plot_with_other(tmp_path, capsys):
    # results -> table -> render, imported one way: the results module never loads the renderers
    code = "import sys, hrpo.leaderboard; print('hrpo.leaderboard_render' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout == "False\n", proc.stderr
    with pytest.raises(AttributeError):
        _ = lb.render  # no re-export of the renderers
    png = tmp_path / "board.png"
    out = tmp_path / "board.md"
    assert cli_main(["leaderboard", str(FIX / "other"), "--out", str(out), "--plot", str(png)]) == 0
    assert capsys.readouterr().err.count("warning") == 0  # Other-only runs are not "no task of the columns"
    assert _rows(out.read_text(), OTHER_HEADER)[BASE]["gsm8k_cot"] == "0.0 ± 0.0"
    width, height = _png_size(png)
    assert width > 1000 and height > 500


def test_mmlu_column_sits_after_mmlu_stem_and_stays_out_of_the_average(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    labels = [label for g, _, label in lb.score_columns() if g == "stem"]
    assert labels[labels.index("MMLU-ST") + 1] == "MMLU"
    without = {r.label: r for r in lb.load_runs([FIX / "ours"])}
    rows = {r.label: r for r in lb.load_runs([FIX / "ours", FIX / "mmlu"])}
    _, data = _results("mmlu/hrpo-mmlu")
    entry = data["results"]["hrpo_mmlu"]
    mmlu = rows[HRPO].scores["mmlu"]  # merged into the HRPO run's row, no Other column for it or its metrics
    assert (mmlu.value, mmlu.stderr) == (entry["exact_match,none"], entry["exact_match_stderr,none"])
    assert set(rows[HRPO].scores) == set(without[HRPO].scores) | {"mmlu"}
    assert rows[HRPO].average("stem") == without[HRPO].average("stem")  # the paper's five only
    table = _rows(lbr.render(list(rows.values()), "md"), HEADER)
    assert table[HRPO]["MMLU"] == lbr.pct(mmlu) and table[GRPO]["MMLU"] == "–"
