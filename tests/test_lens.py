"""The latent lens (issue 16.1): exact per-token records, a valid self-contained page, ``hrpo inspect``, a browser."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hrpo.checkpoint import save_gate
from hrpo.cli import main as hrpo_main
from hrpo.gate import GateConfig, ThinkingGate
from hrpo.generation import DecodeConfig, hybrid_generate
from hrpo.latent import SamplingConfig
from hrpo.lens import compare_latent, inspect_completions, prompt_from_row
from hrpo.lens_html import render_page
from hrpo.testing import encode, save_tiny_llama, scripted_causal_lm, strong_gate

PROMPTS = ["What is 7 times 8? Think step by step.", "Hi"]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fed_embedding(model, gate, token: int, latent: torch.Tensor | None) -> torch.Tensor:
    """The input embedding for ``token`` by the paper's formula, from the gate's raw parameters (not its code)."""
    e = model.get_input_embeddings().weight[token].float()
    if latent is None:
        return e
    r = torch.sigmoid(e @ gate.gate_r.weight.T + gate.gate_r.bias)
    i = torch.sigmoid(e @ gate.gate_i.weight.T + gate.gate_i.bias)
    a = torch.sigmoid(gate.Lambda) ** (gate.config.c * r)
    return a * e + torch.sqrt(1 - a * a + gate.config.eps) * (i * latent)


def nearest_by_cosine(model, vector: torch.Tensor, n: int = 5) -> tuple[list[int], torch.Tensor]:
    cos = F.cosine_similarity(vector[None].float(), model.get_input_embeddings().weight.float(), dim=-1)
    values, ids = cos.topk(n)
    return ids.tolist(), values


@pytest.mark.parametrize(("greedy", "top_k"), [(True, 50), (False, 0)])
def test_records_are_the_decode_loop_exactly(tiny_llama, greedy, top_k):
    model, tokenizer = tiny_llama
    if greedy:
        gate = strong_gate(model.config.hidden_size)
    else:  # almost all latent (a ~ 0.1): sampled tokens whose fed embedding is nearest to another token
        gate = ThinkingGate(
            GateConfig(model.config.hidden_size, r_min=0.01, r_max=0.02), torch.Generator().manual_seed(0)
        )
    sampling = SamplingConfig(temperature=0.7, top_k=top_k, top_p=0.95 if top_k == 0 else 1.0, greedy=greedy)
    config = DecodeConfig(max_new_tokens=12, sampling=sampling, eos_token_ids=())
    records = inspect_completions(model, tokenizer, gate, PROMPTS, config, top=4, nearest=5, seed=3)

    enc = encode(tokenizer, PROMPTS)
    rollout = hybrid_generate(
        model, enc.input_ids, enc.attention_mask, gate, config, tokenizer, torch.Generator().manual_seed(3)
    )
    assert len(records) == 2
    for b, record in enumerate(records):
        ids = rollout.completion_ids[b].tolist()
        assert [t.token_id for t in record.tokens] == ids  # observing changes nothing
        assert [t.hybrid for t in record.tokens] == rollout.thinking_mask[b].tolist()
        assert all(t.phase == "thinking" for t in record.tokens)  # a random model writes no ####
        assert torch.equal(torch.tensor([t.a for t in record.tokens]), rollout.embeds_ratio[b])
        assert torch.equal(torch.tensor([t.hidden_ratio for t in record.tokens]), rollout.hidden_ratio[b])
        assert "".join(t.text for t in record.tokens) == tokenizer.decode(ids)
        for k, t in enumerate(record.tokens):
            assert t.hybrid  # every token of a completion without #### is fed back as a hybrid embedding
            if top_k:  # the latent's top tokens are the head of the stored sparse distribution
                assert [c.token_id for c in t.latent_top] == rollout.latent_ids[b, k, :4].tolist()
                probs = torch.tensor([c.value for c in t.latent_top])
                torch.testing.assert_close(probs, rollout.latent_probs[b, k, :4], rtol=0, atol=1e-7)
                stored = rollout.latent_probs[b, k]
                h = (
                    stored[:, None] * model.get_input_embeddings().weight[rollout.latent_ids[b, k].long()]
                ).sum(0)
                latent = h / stored.norm()
            else:
                latent = rollout.latents[b, k]
            assert t.latent_top[0].value >= t.latent_top[-1].value
            want_ids, want_cos = nearest_by_cosine(model, fed_embedding(model, gate, ids[k], latent))
            assert [c.token_id for c in t.nearest] == want_ids
            torch.testing.assert_close(
                torch.tensor([c.value for c in t.nearest]), want_cos, rtol=0, atol=1e-5
            )
            assert t.nearest_differs == (want_ids[0] != ids[k])
    assert records[0].mean_hidden_ratio == pytest.approx(
        rollout.hidden_ratio[0][rollout.thinking_mask[0]].mean().item(), abs=1e-6
    )
    differs = sum(r.differs_count for r in records)
    assert greedy or differs > 0  # with a ~ 0.1 the latent, not E[y], decides the nearest token
    page = render_page(list(zip(records, records, strict=True)))
    assert len(re.findall(r'class="tok [^"]*\bdiffers\b', page)) == 2 * differs


# ---------------------------------------------------------------------------------- a scripted completion

# Characters a page must escape, a delimiter split over tokens, and an answer after it.
SCRIPT_TEXT = "a<b && \"c\" 'd' </script> ok\n####5"
GOLD = "5"


@pytest.fixture(scope="module")
def scripted(smol_tokenizer):
    """(model, tokenizer, gate, token ids): a model that writes SCRIPT_TEXT + EOS whatever it is fed."""
    ids = [*smol_tokenizer(SCRIPT_TEXT, add_special_tokens=False).input_ids, smol_tokenizer.eos_token_id]
    model = scripted_causal_lm(
        [ids, ids], len(smol_tokenizer), eos=smol_tokenizer.eos_token_id, pad=smol_tokenizer.pad_token_id
    )
    torch.manual_seed(0)
    model.embed.weight.data.normal_()
    forward = model.forward

    def restart_at_prefill(input_ids=None, **kwargs):  # each decode (latent on, then off) replays the script
        if input_ids is not None:
            model.step = 0
        return forward(input_ids=input_ids, **kwargs)

    model.forward = restart_at_prefill
    return model, smol_tokenizer, strong_gate(16), ids


def scripted_pairs(scripted):
    model, tokenizer, gate, ids = scripted
    row = {"id": "r<1>", "question": "What's <b>2 & 3</b>?", "gold": GOLD, "task": "gsm8k"}
    lens_prompt = prompt_from_row(row, tokenizer)
    config = DecodeConfig(max_new_tokens=len(ids) + 4, sampling=SamplingConfig(greedy=True))
    return compare_latent(model, tokenizer, gate, [lens_prompt], config)


def test_the_lens_reports_what_the_model_was_fed_and_the_answer_phase(scripted):
    model, tokenizer, gate, ids = scripted
    row = {"id": "r", "question": "What is 2 and 3?", "gold": GOLD, "task": "gsm8k"}
    model.fed = []
    config = DecodeConfig(max_new_tokens=len(ids) + 4, sampling=SamplingConfig(greedy=True))
    (record,) = inspect_completions(model, tokenizer, gate, [prompt_from_row(row, tokenizer)], config)
    assert [t.token_id for t in record.tokens] == ids and record.stop_reason == "eos"
    # The token completing "####" starts the answer phase; every earlier token was fed as a hybrid embedding.
    texts = [tokenizer.decode(ids[: k + 1]) for k in range(len(ids))]
    boundary = next(k for k, text in enumerate(texts) if "####" in text)
    assert record.boundary == boundary and record.thinking_length == boundary
    assert [t.phase for t in record.tokens] == ["thinking"] * boundary + ["answer"] * (len(ids) - boundary)
    assert [t.hybrid for t in record.tokens] == [k < boundary for k in range(len(ids))]
    assert all(t.a == 1.0 and t.hidden_ratio == 0.0 for t in record.tokens[boundary:])
    assert all(0.3 < t.hidden_ratio < 0.99 for t in record.tokens[:boundary])
    # Nearest tokens of the embedding the model itself recorded receiving (token k is fed at step k + 1).
    for k, t in enumerate(record.tokens[:-1]):
        fed = model.fed[k][0]
        want_ids, want_cos = nearest_by_cosine(model, fed)
        assert [c.token_id for c in t.nearest] == want_ids
        torch.testing.assert_close(torch.tensor([c.value for c in t.nearest]), want_cos, rtol=0, atol=1e-5)
    # Summary: the scorer's answer and verdict, the text without the EOS token.
    assert record.text == SCRIPT_TEXT
    assert record.answer == GOLD and record.correct is True and record.format_ok
    assert record.tokens[-1].special and record.tokens[-1].token == tokenizer.eos_token
    data = record.to_dict()
    assert data["thinking_length"] == boundary and len(data["nearest_differs"]) == len(ids)


class PageParser(HTMLParser):
    """Checks nesting, collects token spans per side, scripts and resource attributes."""

    VOID = frozenset({"meta", "br", "img", "input", "link", "hr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tokens: dict[tuple[str, str], list[str]] = {}
        self.current: tuple[str, str] | None = None
        self.scripts: list[tuple[dict, str]] = []
        self.in_script: dict | None = None
        self.classes: list[str] = []
        self.attrs_seen: set[str] = set()
        self.svgs = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.attrs_seen |= set(attrs)
        self.classes.append(attrs.get("class") or "")
        self.svgs += tag == "svg"
        if tag in self.VOID:
            return
        self.stack.append(tag)
        if tag == "span" and "tok" in (attrs.get("class") or "").split():
            self.current = (attrs["data-i"], attrs["data-s"])
            self.tokens.setdefault(self.current, []).append("")
        if tag == "script":
            self.in_script = attrs
            self.scripts.append((attrs, ""))

    def handle_startendtag(self, tag, attrs):
        self.attrs_seen |= {k for k, _ in attrs}

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag == "span":
            self.current = None
        if tag == "script":
            self.in_script = None

    def handle_data(self, data):
        if self.current is not None:
            self.tokens[self.current][-1] += data
        if self.in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def test_page_is_valid_self_contained_and_holds_every_token(scripted):
    pairs = scripted_pairs(scripted)
    page = render_page(pairs, title="lens <test> & co", settings={"tau": 0.5, "note": '<b>"x"</b>'})
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    on, off = pairs[0]
    assert on.latent and not off.latent and on.boundary is not None
    assert parser.tokens[("0", "on")] == [t.text for t in on.tokens]
    assert parser.tokens[("0", "off")] == [t.text for t in off.tokens]
    assert "".join(parser.tokens[("0", "on")]) == SCRIPT_TEXT + scripted[1].eos_token
    # No raw markup from the data: every <, & and quote of tokens, prompt and settings is escaped.
    assert "</script> ok" not in page and "<b>2" not in page and '<b>"x"' not in page
    assert "&lt;b&gt;2 &amp; 3&lt;/b&gt;" in page and "&lt;b&gt;&quot;x&quot;&lt;/b&gt;" in page
    assert all(f">{escape(t.text, quote=True)}</span>" in page for t in on.tokens)
    assert any("<" in t.text for t in on.tokens) and any("&" in t.text for t in on.tokens)
    # Self-contained: inline style and scripts only, nothing fetched.
    assert not {"src", "href"} & parser.attrs_seen
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)
    (data_attrs, data_text), (code_attrs, _) = parser.scripts
    assert data_attrs == {"type": "application/json", "id": "lens-data"} and code_attrs == {}
    data = json.loads(data_text)
    side = data["items"][0]["sides"]["on"]["tokens"]
    assert [t["id"] for t in side] == [t.token_id for t in on.tokens]
    assert [t["h"] for t in side] == [t.hidden_ratio for t in on.tokens]
    assert side[0]["near"][0][0] == on.tokens[0].nearest[0].text
    # Answer phase marked, the #### boundary visible on the hybrid side, one hidden-ratio plot per side.
    answer_spans = [c for c in parser.classes if c.startswith("tok answer")]
    assert len(answer_spans) == 2 * (len(on.tokens) - on.boundary)
    assert sum("delim" in c.split() for c in parser.classes) == 2
    assert parser.classes.count("boundary") == 2 and parser.svgs == 2
    assert page.count('class="boundary-line"') == 2


def test_hrpo_inspect_on_a_saved_checkpoint(tmp_path, smol_tokenizer, capsys, monkeypatch):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    base = save_tiny_llama(tmp_path / "base", smol_tokenizer)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    ckpt = tmp_path / "run"
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora).save_pretrained(ckpt)
    gate = strong_gate(64)
    save_gate(gate, ckpt, decoding={"delimiter": "####", "temperature": 0.6, "top_k": 20, "top_p": 1.0})
    (ckpt / "hrpo_run.json").write_text(json.dumps({"base_model": str(base), "hybrid": True, "peft": True}))

    out, records = tmp_path / "page" / "lens.html", tmp_path / "lens.json"
    argv = ["inspect", "--checkpoint_path", str(ckpt), "--prompt", "What is 2 plus 3?", "--gold", "5"]
    argv += ["--prompt", "And 1 plus 1?", "--gold", "2"]
    argv += ["--max_new_tokens", "6", "--out", str(out), "--json", str(records)]
    assert hrpo_main(argv) == 0
    printed = capsys.readouterr().out
    assert "latent on" in printed and "latent off" in printed and f"wrote {out}" in printed
    saved = json.loads(records.read_text())
    assert saved["settings"]["tau"] == 0.6 and saved["settings"]["top_k"] == 20
    on = saved["prompts"][0]["latent_on"]
    assert on["prompt"]["row"]["gold"] == "5" and on["correct"] is False  # a random model is wrong
    assert saved["prompts"][1]["latent_off"]["prompt"]["row"]["gold"] == "2"

    # The same decode, by hand: LoRA merged into the base model, the saved gate, the checkpoint's tau/top-k.
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), ckpt).merge_and_unload()
    text = on["prompt"]["text"]
    enc = smol_tokenizer([text], return_tensors="pt", add_special_tokens=False)
    config = DecodeConfig(max_new_tokens=6, sampling=SamplingConfig(temperature=0.6, top_k=20, greedy=True))
    rollout = hybrid_generate(model, enc.input_ids, enc.attention_mask, gate, config, smol_tokenizer)
    assert [t["token_id"] for t in on["tokens"]] == rollout.completion_ids[0].tolist()
    assert [t["hidden_ratio"] for t in on["tokens"]] == rollout.hidden_ratio[0].tolist()
    page = out.read_text()
    assert all(f'data-k="{k}"' in page for k in range(len(on["tokens"])))

    # Bad input: a clear one-line error naming the file and line, or the folder.
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"question": "ok", "gold": "1"}\n{"gold": "2"}\n')
    assert hrpo_main(["inspect", "--checkpoint_path", str(ckpt), "--rows", str(bad), "--out", str(out)]) == 2
    assert f"{bad}:2: missing or empty field 'question'" in capsys.readouterr().err
    assert hrpo_main(["inspect", "--checkpoint_path", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    assert "nope does not exist" in capsys.readouterr().err
    argv = ["inspect", "--checkpoint_path", str(ckpt), "--rows", str(bad), "--index", "5"]
    assert hrpo_main(argv) == 2
    assert capsys.readouterr().err.count("error") == 1  # the bad line is reported before --index is

    # A gate made for another base model is refused before any weights load.
    save_gate(ThinkingGate(GateConfig(32)), ckpt)
    monkeypatch.setattr(
        AutoModelForCausalLM, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded")
    )
    assert hrpo_main(["inspect", "--checkpoint_path", str(ckpt), "--prompt", "x", "--out", str(out)]) == 2
    assert "hidden size 32 but the model's embeddings have hidden size 64" in capsys.readouterr().err


def test_inspect_a_benchmark_row_by_index(tmp_path, shared_data, smol_tokenizer, monkeypatch):
    from hrpo.data import load_benchmark

    base = save_tiny_llama(tmp_path / "base", smol_tokenizer)
    save_gate(strong_gate(64), base)
    argv = ["inspect", "--checkpoint_path", str(base), "--task", "hrpo_gsm8k", "--index", "17"]
    argv += ["--data_dir", str(shared_data), "--max_new_tokens", "3", "--out", str(tmp_path / "p.html")]
    assert hrpo_main([*argv, "--json", str(tmp_path / "r.json")]) == 0
    row = load_benchmark("gsm8k", "test", data_dir=shared_data)[17]
    saved = json.loads((tmp_path / "r.json").read_text())["prompts"][0]["latent_on"]
    assert (
        saved["prompt"]["row"]["id"] == row["id"] and saved["prompt"]["question"] == row["question"].strip()
    )
    assert hrpo_main([*argv[:-4], "--index", "99999", "--data_dir", str(shared_data)]) == 2


def run_chromium(args: list[str], timeout: float = 90) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            str(CHROMIUM),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
        ]
        return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="headless browser check needs Debian's chromium at /usr/bin/chromium "
    "(apt-get install chromium; .ci/run installs it where apt-get works)"
)  # fmt: skip
def test_the_page_runs_in_headless_chromium(scripted, tmp_path):
    page = tmp_path / "lens.html"
    page.write_text(render_page(scripted_pairs(scripted)), encoding="utf-8")
    url = page.as_uri()
    dom = run_chromium(["--dump-dom", url])
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if "Uncaught" in line or "Error" in line], console
    # The script ran to its end and filled the details panel for the first hybrid token.
    assert 'data-lens-ready="1"' in dom.stdout
    assert "latent top tokens (p)" in dom.stdout and "nearest tokens of the fed embedding" in dom.stdout
    shot = tmp_path / "lens.png"
    result = run_chromium([f"--screenshot={shot}", "--window-size=1400,900", "--hide-scrollbars", url])
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1400, 900) and len(png) > 20_000


def test_inspect_rejects_ambiguous_input(capsys, tmp_path):
    assert hrpo_main(["inspect", "--pretrained", "x", "--prompt", "a", "--rows", "b.jsonl"]) == 2
    assert "exactly one of --prompt" in capsys.readouterr().err
    assert hrpo_main(["inspect", "--pretrained", "x", "--prompt", "a", "--prompt", "b", "--gold", "1"]) == 2
    assert "1 --gold for 2 --prompt" in capsys.readouterr().err
    # A QA row needs its passages (as hrpo eval gives them), or an explicit --closed_book.
    rows = tmp_path / "qa.jsonl"
    rows.write_text(
        json.dumps({"question": "Who wrote Hamlet?", "gold": ["Shakespeare"], "task": "qa"}) + "\n"
    )
    assert hrpo_main(["inspect", "--pretrained", "x", "--rows", str(rows)]) == 2
    assert "have no 'contexts'" in capsys.readouterr().err
