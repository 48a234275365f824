"""Corrupt inputs are refused with one clear error naming the file (issue 15, item 4): gate files, LoRA adapters,
dataset files. One parametrized test per family; every case asserts the project's exception type, the file
(and line where one applies) in the message, a hint of what to do, and that the error is raised by project
code (the last traceback frame is in the checkout, not in a library) without a chained library traceback.

Families and case counts (see the ids): gate 19, adapter 10 (+1 through ``HRPOLM``), dataset 20.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hrpo.checkpoint import GATE_CONFIG, GATE_WEIGHTS, GateCheckpointError, load_gate, save_gate
from hrpo.data import DataSourceError, MalformedRowError, load_benchmark
from hrpo.testing import assert_project_error, build_tiny_model, strong_gate

HIDDEN = 64


# ------------------------------------------------------------------------------------------------ gate files


def _gate_json(folder: Path, edit) -> None:
    path = folder / GATE_CONFIG
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def _cut(path: Path, keep) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: keep(len(data))])


def _foreign_weights(folder: Path) -> None:
    other = save_gate(strong_gate(HIDDEN // 2), folder.parent / "other_gate")
    shutil.copyfile(other / GATE_WEIGHTS, folder / GATE_WEIGHTS)


def _nan_weights(folder: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / GATE_WEIGHTS)
    tensors["Lambda"] = torch.full_like(tensors["Lambda"], float("nan"))
    save_file(tensors, folder / GATE_WEIGHTS)


W, J = GATE_WEIGHTS, GATE_CONFIG
GATE_CASES = {
    # weights file
    "weights_cut_in_half": (lambda f: _cut(f / W, lambda n: n // 2), W, "cut short or damaged"),
    "weights_cut_by_one_byte": (lambda f: _cut(f / W, lambda n: n - 1), W, "cut short or damaged"),
    "weights_header_only": (lambda f: _cut(f / W, lambda n: 8), W, "cut short or damaged"),
    "weights_empty": (lambda f: (f / W).write_bytes(b""), W, "cut short or damaged"),
    "weights_garbled": (lambda f: (f / W).write_bytes(bytes(range(256)) * 8), W, "cut short or damaged"),
    "weights_of_another_gate": (_foreign_weights, W, "do not belong together"),
    "weights_nan": (_nan_weights, W, "not finite"),
    "weights_missing": (lambda f: (f / W).unlink(), W, "incomplete"),
    # config file
    "json_cut_short": (lambda f: _cut(f / J, lambda n: n // 2), J, "not valid JSON"),
    "json_not_utf8": (
        lambda f: (f / J).write_bytes(b'{"format": "hrpo-thinking-gate\xff"}'),
        J,
        "not valid JSON",
    ),
    "json_not_a_gate": (lambda f: _gate_json(f, lambda m: m.pop("format")), J, "not an HRPO gate file"),
    "json_version_2": (lambda f: _gate_json(f, lambda m: m.update(format_version=2)), J, "version 2"),
    "json_no_gate_block": (lambda f: _gate_json(f, lambda m: m.pop("gate")), J, "field 'gate' must be"),
    "json_gate_block_list": (lambda f: _gate_json(f, lambda m: m.update(gate=[64])), J, "field 'gate' must"),
    "json_no_hidden_size": (
        lambda f: _gate_json(f, lambda m: m["gate"].pop("hidden_size")),
        J,
        "hidden_size",
    ),
    "json_hidden_size_str": (
        lambda f: _gate_json(f, lambda m: m["gate"].update(hidden_size="64")),
        J,
        "'gate.hidden_size' must be an integer, got '64'",
    ),
    "json_hidden_size_float": (
        lambda f: _gate_json(f, lambda m: m["gate"].update(hidden_size=64.0)),
        J,
        "'gate.hidden_size' must be an integer, got 64.0",
    ),
    "json_r_min_str": (
        lambda f: _gate_json(f, lambda m: m["gate"].update(r_min="0.3")),
        J,
        "'gate.r_min' must be a number",
    ),
    "json_decoding_list": (
        lambda f: _gate_json(f, lambda m: m.update(decoding=["####"])),
        J,
        "field 'decoding' must be an object",
    ),
}


@pytest.fixture()
def gate_folder(tmp_path) -> Path:
    return save_gate(strong_gate(HIDDEN), tmp_path / "ckpt", decoding={"delimiter": "####"})


def test_good_gate_loads(gate_folder):
    """The control: the untouched folder loads, so every refusal below is caused by its corruption."""
    gate = load_gate(gate_folder, hidden_size=HIDDEN)
    assert gate.config.hidden_size == HIDDEN


@pytest.mark.parametrize("case", sorted(GATE_CASES))
def test_corrupt_gate_refused(gate_folder, case):
    corrupt, name, reason = GATE_CASES[case]
    corrupt(gate_folder)
    with pytest.raises(GateCheckpointError) as excinfo:
        load_gate(gate_folder, hidden_size=HIDDEN)
    msg = assert_project_error(excinfo, str(gate_folder), reason)
    assert name in msg
    assert any(hint in msg for hint in ("another checkpoint", "good copy", "incomplete", "this hrpo reads"))


def test_gate_for_another_hidden_size_names_both(gate_folder):
    with pytest.raises(GateCheckpointError) as excinfo:
        load_gate(gate_folder, hidden_size=HIDDEN * 2)
    assert_project_error(excinfo, str(gate_folder), f"hidden size {HIDDEN}", f"hidden size {HIDDEN * 2}")


# ------------------------------------------------------------------------------------------------ LoRA adapters

VOCAB = 96
TARGETS = ["q_proj", "v_proj"]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory) -> Path:
    """A LoRA adapter (r 4 on q/v) saved on a tiny Llama of hidden size 64 named ``tiny-llama-64``."""
    from peft import LoraConfig, get_peft_model

    model = build_tiny_model("llama", VOCAB, seed=0)
    model.name_or_path = model.config._name_or_path = "tiny-llama-64"  # what PEFT records as the base
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    out = tmp_path_factory.mktemp("adapter") / "ckpt"
    peft_model.save_pretrained(out, save_embedding_layers=False)
    return out


def _adapter_json(folder: Path, edit) -> None:
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


A_CFG, A_W = "adapter_config.json", "adapter_model.safetensors"
ADAPTER_CASES = {
    "other_hidden_size": (None, {"hidden_size": 32}, "lora_A.weight", "belongs to another base model"),
    "fewer_layers": (None, {"num_hidden_layers": 1}, "layers.1", "another architecture"),
    "config_cut_short": (lambda f: _cut(f / A_CFG, lambda n: n // 2), {}, A_CFG, "not valid JSON"),
    "config_not_utf8": (lambda f: (f / A_CFG).write_bytes(b'{"r": "\xff"}'), {}, A_CFG, "not UTF-8"),
    "config_not_object": (lambda f: (f / A_CFG).write_text("[4]"), {}, A_CFG, "expected a JSON object"),
    "config_no_peft_type": (
        lambda f: _adapter_json(f, lambda c: c.pop("peft_type")),
        {},
        A_CFG,
        "'peft_type'",
    ),
    "config_rank_str": (lambda f: _adapter_json(f, lambda c: c.update(r="4")), {}, A_CFG, "'r' must be"),
    "weights_cut_short": (lambda f: _cut(f / A_W, lambda n: n - 100), {}, A_W, "cut short or damaged"),
    "weights_garbled": (lambda f: (f / A_W).write_bytes(b"\x10" * 64), {}, A_W, "cut short or damaged"),
    "config_missing": (lambda f: (f / A_CFG).unlink(), {}, A_CFG, "holds no PEFT adapter"),
}


@pytest.mark.parametrize("case", sorted(ADAPTER_CASES))
def test_corrupt_or_foreign_adapter_refused(adapter_dir, tmp_path, case):
    from hrpo.adapter_check import check_adapter_fits

    corrupt, model_overrides, name, reason = ADAPTER_CASES[case]
    folder = shutil.copytree(adapter_dir, tmp_path / "ckpt")
    if corrupt is not None:
        corrupt(folder)
    model = build_tiny_model("llama", VOCAB, seed=1, **model_overrides)
    with pytest.raises(GateCheckpointError) as excinfo:
        check_adapter_fits(folder, model)
    msg = assert_project_error(excinfo, str(folder), name, reason)
    if corrupt is None:  # a foreign adapter: the message says which base model it was saved for
        assert "tiny-llama-64" in msg and "pretrained=" in msg


def test_adapter_check_accepts_the_right_model(adapter_dir):
    """The control: the check passes on a model of the adapter's shape and PEFT then loads it; without the
    check PEFT's own failure on the other model is a deep torch ``size mismatch`` (why the check exists)."""
    from peft import PeftModel

    from hrpo.adapter_check import check_adapter_fits

    check_adapter_fits(adapter_dir, build_tiny_model("llama", VOCAB, seed=1))
    loaded = PeftModel.from_pretrained(build_tiny_model("llama", VOCAB, seed=1), adapter_dir)
    assert loaded.peft_config["default"].r == 4
    with pytest.raises(RuntimeError, match="size mismatch"):
        PeftModel.from_pretrained(build_tiny_model("llama", VOCAB, seed=1, hidden_size=32), adapter_dir)


def test_foreign_adapter_refused_by_hrpo_lm(tmp_path, smol_tokenizer):
    """End to end: ``HRPOLM(pretrained=<hidden-32 model>, checkpoint=<adapter of a hidden-64 model>)`` stops
    with the adapter error before PEFT touches a tensor."""
    from peft import LoraConfig, get_peft_model

    from hrpo.lm_eval_adapter import HRPOLM
    from hrpo.testing import save_tiny_model

    base64 = save_tiny_model(tmp_path / "base64", "llama", smol_tokenizer)
    model = build_tiny_model("llama", len(smol_tokenizer))
    model.name_or_path = model.config._name_or_path = str(base64)
    get_peft_model(model, LoraConfig(r=4, target_modules=TARGETS)).save_pretrained(tmp_path / "ckpt")
    base32 = save_tiny_model(tmp_path / "base32", "llama", smol_tokenizer, hidden_size=32)
    with pytest.raises(GateCheckpointError) as excinfo:
        HRPOLM(pretrained=str(base32), checkpoint=str(tmp_path / "ckpt"), latent="off", device="cpu")
    assert_project_error(excinfo, str(tmp_path / "ckpt"), str(base64), "in_features 64", "in_features 32")


# ------------------------------------------------------------------------------------------------ dataset files

GSM = json.dumps({"question": "What is 1+2?", "answer": "1+2=3\n#### 3"})
GSM_FILE = "gsm8k/test.jsonl"
WIKI_FILE = "2wikimultihopqa/2wikimultihopqa_dev_questions_and_answers.json"
WIKI = json.dumps([{"question": "q1", "answer": "a"}, {"question": "q2", "answer": "b"}], indent=1)
MMLU_FILE = "mmlu/dev/toy_dev.csv"
MMLU = '"What is 1+1?",1,2,3,4,B\n"What is 2+2?",2,3,4,5,C\n'
QA = json.dumps({"id": "q1", "question": "Who?", "gold": ["Ada"]})


def _load(name: str, skip: bool = False):
    def run(root: Path):
        return load_benchmark(name, "dev" if name == "mmlu" else None, data_dir=root, skip_bad_rows=skip)

    return run


def _qa_file(root: Path):
    from hrpo.tasks.utils import custom_dataset

    return custom_dataset("qa_file", qa_file=str(root / "rows.jsonl"), closed_book=True)


def _train_file(root: Path):
    from hrpo.data.build import read_rows

    return read_rows(root / "rows.jsonl")


# name -> (file, bytes, reader, expected error type, where (path suffix), reason)
DATA_CASES = {
    "gsm8k_empty": (GSM_FILE, b"", _load("gsm8k"), MalformedRowError, "", "empty"),
    "gsm8k_blank_lines": (GSM_FILE, b"\n \n\n", _load("gsm8k"), MalformedRowError, "", "empty"),
    "gsm8k_empty_skip_bad_rows": (
        GSM_FILE, b"", _load("gsm8k", skip=True), MalformedRowError, "", "empty",
    ),
    "gsm8k_not_utf8": (
        GSM_FILE, f"{GSM}\n".encode() + b'{"question": "caf\xe9"}\n', _load("gsm8k"),
        MalformedRowError, ":2", "not UTF-8 (byte 0xe9",
    ),
    "gsm8k_cut_mid_line": (
        GSM_FILE, f"{GSM}\n{GSM}\n{GSM[:20]}".encode(), _load("gsm8k"),
        MalformedRowError, ":3", "ends mid-line",
    ),
    "gsm8k_missing_file": (
        "gsm8k/train.jsonl", GSM.encode(), _load("gsm8k"), DataSourceError, "", "not found",
    ),
    "2wiki_empty": (WIKI_FILE, b"  \n", _load("2wiki"), MalformedRowError, "", "empty"),
    "2wiki_not_utf8": (
        WIKI_FILE, WIKI.encode().replace(b"q2", b"q\xff"), _load("2wiki"),
        MalformedRowError, ":7", "not UTF-8 (byte 0xff at column 17",
    ),
    "2wiki_cut_short": (
        WIKI_FILE, WIKI.encode()[:-10], _load("2wiki"), MalformedRowError, ":", "cut short",
    ),
    "mmlu_empty": (MMLU_FILE, b"", _load("mmlu"), MalformedRowError, "", "empty"),
    "mmlu_not_utf8": (
        MMLU_FILE, MMLU.encode() + b'"caf\xe9",1,2,3,4,A\n', _load("mmlu"),
        MalformedRowError, ":", "not UTF-8 (byte 0xe9",
    ),
    "mmlu_cut_mid_line": (
        MMLU_FILE, MMLU.encode() + b'"What is', _load("mmlu"), MalformedRowError, ":3", "columns",
    ),
    "math_tree_problem_not_utf8": (
        "math/test/algebra/1.json", b'{"problem": "caf\xe9"}', _load("math"), MalformedRowError, "",
        "not UTF-8 (byte 0xe9 at offset 16)",
    ),
    "math_tree_problem_cut_short": (
        "math/test/algebra/1.json", b'{"problem": "p", "solu', _load("math"), MalformedRowError, "",
        "invalid JSON",
    ),
    "qa_file_empty": ("rows.jsonl", b"", _qa_file, MalformedRowError, "", "empty"),
    "qa_file_not_utf8": ("rows.jsonl", b'{"question": "\xc3("}\n', _qa_file, MalformedRowError, ":1", "UTF-8"),
    "qa_file_cut_mid_line": (
        "rows.jsonl", f"{QA}\n{QA[:15]}".encode(), _qa_file, MalformedRowError, ":2", "ends mid-line",
    ),
    "qa_file_row_without_gold": (
        "rows.jsonl", f'{QA}\n{{"id": "q2", "question": "Who?"}}\n'.encode(), _qa_file,
        MalformedRowError, ":2", "['gold']",
    ),
    "qa_file_not_objects": ("rows.jsonl", b"[1, 2]\n", _qa_file, MalformedRowError, ":1", "JSON object"),
    "train_file_cut_mid_line": (
        "rows.jsonl", f"{QA}\n{QA[:-3]}".encode(), _train_file, MalformedRowError, ":2", "ends mid-line",
    ),
}  # fmt: skip


def test_good_dataset_files_load(tmp_path):
    """The control: the same files, intact, load (so the refusals below come from the corruption)."""
    for rel, text in (
        (GSM_FILE, GSM + "\n"),
        (WIKI_FILE, WIKI),
        (MMLU_FILE, MMLU),
        ("rows.jsonl", QA + "\n"),
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert [r["gold"] for r in load_benchmark("gsm8k", "test", data_dir=tmp_path)] == ["3"]
    assert len(load_benchmark("2wiki", data_dir=tmp_path)) == 2
    assert [r["gold"] for r in load_benchmark("mmlu", "dev", data_dir=tmp_path)] == ["B", "C"]
    assert _qa_file(tmp_path)["test"]["gold"] == [["Ada"]]


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_corrupt_dataset_refused(tmp_path, case):
    rel, data, read, error, where, reason = DATA_CASES[case]
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    with pytest.raises(error) as excinfo:
        read(tmp_path)
    expected_path = str(tmp_path / GSM_FILE) if error is DataSourceError else str(path)
    msg = assert_project_error(excinfo, expected_path + where, reason)
    assert any(hint in msg for hint in ("re-", "Put the file", "each row needs", "expected")), msg
