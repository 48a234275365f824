"""The latent lens: what every completion token of a hybrid decode was fed back as, token by token.

:func:`inspect_completions` decodes prompts with the real loop (:func:`hrpo.generation.hybrid_generate`, through
its ``observer`` hook, so nothing is re-simulated) and returns one :class:`CompletionRecord` per prompt, holding
one :class:`TokenRecord` per completion token:

* the token (id, its own text, the piece it adds to the completion text), its phase (``thinking`` until the
  text contains the answer delimiter; the token completing ``####`` and everything after it is ``answer``) and
  whether it was fed back as a hybrid embedding;
* ``a`` (mean over D of the gate's ``a``; 1 for plain inputs) and the hidden ratio ``mean_D sqrt(1 - a^2)``
  (0 for plain inputs), exactly as :class:`hrpo.generation.Rollout` records them;
* the latent's top tokens: the largest entries of the distribution ``p`` the latent ``h = p @ E / ||p||`` was
  built from (tau-tempered, top-k/top-p truncated, as the loop built it);
* the nearest vocabulary tokens (cosine similarity to the rows of the input embedding matrix ``E``) of the
  embedding actually fed to the model for this token, and whether the nearest one differs from the chosen token
  (the paper's "the latent says something else" cases).

:func:`compare_latent` decodes the same prompts with the latent on and off (plain token inputs), so a page can
show what the latent changes. :func:`load_checkpoint` loads a training output as evaluation does (base model,
LoRA merged, gate). The HTML page is :mod:`hrpo.lens_html`; the command is ``hrpo inspect``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from hrpo import prompts, rewards
from hrpo.checkpoint import CheckpointInfo, GateCheckpointError, load_gate, read_gate_config
from hrpo.decoding import DecodingSettings
from hrpo.gate import ThinkingGate
from hrpo.generation import STOP_EOS, STOP_LENGTH, STOP_STRING, DecodeConfig, StepView, hybrid_generate
from hrpo.latent import step_distribution
from hrpo.scoring import region

STOP_NAMES = {STOP_EOS: "eos", STOP_STRING: "stop string", STOP_LENGTH: "length"}
# The stop strings of the hrpo_* lm-eval tasks (tasks/_hrpo_template_yaml ``until``): decode as eval does.
EVAL_STOP_STRINGS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>")


@dataclass(frozen=True)
class Candidate:
    """A vocabulary token with a value: a probability (latent top-k) or a cosine similarity (nearest)."""

    token_id: int
    text: str
    value: float


@dataclass(frozen=True)
class TokenRecord:
    """One completion token: what was chosen and what the model was fed for it."""

    position: int
    """0-based completion position."""
    token_id: int
    token: str
    """The token's own text (``decode([id])``; the raw vocabulary piece where that is not valid UTF-8)."""
    text: str
    """What the token adds to the completion text (the pieces of a completion concatenate to its full text)."""
    phase: str
    """``thinking`` or ``answer`` (the token completing the delimiter and all later ones)."""
    hybrid: bool
    """Fed back as ``gate(E[y], h)``; False = plain ``E[y]``."""
    a: float
    """Mean over D of the gate's ``a`` (1.0 for plain inputs)."""
    hidden_ratio: float
    """Mean over D of ``sqrt(1 - a^2)``, the latent's share (0.0 for plain inputs)."""
    latent_top: tuple[Candidate, ...]
    """The largest probabilities of the distribution the token was chosen from (and the latent built from)."""
    nearest: tuple[Candidate, ...]
    """Vocabulary tokens whose input embeddings are closest (cosine) to the embedding fed for this token."""
    special: bool = False
    """An EOS/special token."""

    @property
    def nearest_differs(self) -> bool:
        """The fed embedding is closest to some other token than the one chosen."""
        return bool(self.nearest) and self.nearest[0].token_id != self.token_id


@dataclass(frozen=True)
class LensPrompt:
    """A prompt to inspect: the exact text fed to the tokenizer, and optionally the row that scores it."""

    text: str
    """Prompt string (already chat-templated; tokenised with ``add_special_tokens=False``)."""
    label: str = ""
    """A name for the page (row id, ``prompt``)."""
    question: str = ""
    """The question as a reader sees it (the user message)."""
    row: dict[str, Any] | None = None
    """An :mod:`hrpo.data` row (``gold``, ``task``, ``choices``...) to score the completion; None = unscored."""


@dataclass(frozen=True)
class CompletionRecord:
    """One decoded prompt: its tokens and a summary."""

    prompt: LensPrompt
    latent: bool
    """Decoded with hybrid latent inputs (False: plain token inputs)."""
    tokens: tuple[TokenRecord, ...]
    text: str
    """The completion text with special tokens skipped (what the scorer reads)."""
    stop_reason: str
    answer: str
    """The answer region after the delimiter (:func:`hrpo.scoring.region.answer_region`)."""
    correct: bool | None = None
    """Scored by :func:`hrpo.rewards.score` (None without a gold answer)."""
    format_ok: bool = False
    """Exactly one delimiter."""
    parsed: str | None = None

    @property
    def thinking_length(self) -> int:
        """Tokens before the delimiter-completing token (all tokens when there is no delimiter)."""
        return sum(t.phase == "thinking" for t in self.tokens)

    @property
    def boundary(self) -> int | None:
        """Position of the token that completes the delimiter, None if the text has none."""
        return next((t.position for t in self.tokens if t.phase == "answer"), None)

    @property
    def mean_hidden_ratio(self) -> float:
        """Mean hidden ratio over the hybrid tokens (0.0 without any)."""
        values = [t.hidden_ratio for t in self.tokens if t.hybrid]
        return sum(values) / len(values) if values else 0.0

    @property
    def differs_count(self) -> int:
        """How many fed embeddings are nearest to another token than the chosen one."""
        return sum(t.nearest_differs for t in self.tokens)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, with the derived summary values."""
        data = asdict(self)
        data["nearest_differs"] = [t.nearest_differs for t in self.tokens]
        data.update(
            thinking_length=self.thinking_length,
            boundary=self.boundary,
            mean_hidden_ratio=self.mean_hidden_ratio,
            differs_count=self.differs_count,
        )
        return data


@dataclass
class _StepLog:
    """Per full-batch row, what the observer saw at each step (CPU lists)."""

    top_ids: list[list[list[int]]] = field(default_factory=list)
    top_probs: list[list[list[float]]] = field(default_factory=list)
    near_ids: list[list[list[int]]] = field(default_factory=list)
    near_cos: list[list[list[float]]] = field(default_factory=list)
    hybrid: list[list[bool]] = field(default_factory=list)
    a: list[list[float]] = field(default_factory=list)
    hidden: list[list[float]] = field(default_factory=list)


class _Observer:
    """Collects the latent's top tokens and the fed embedding's nearest tokens at every decode step."""

    def __init__(
        self, model: PreTrainedModel, batch: int, config: DecodeConfig, top: int, nearest: int, bar: tqdm
    ) -> None:
        weight = model.get_input_embeddings().weight.detach()  # (V, D)
        self.weight = weight
        self.norms = weight.float().norm(dim=-1).clamp_min(1e-12)  # (V,)
        self.sampling = config.sampling
        self.top, self.nearest = top, nearest
        self.log = [_StepLog() for _ in range(batch)]
        self.bar = bar

    def __call__(self, view: StepView) -> None:
        # The latent's distribution as the loop built it; plain greedy decoding builds none, so it is computed
        # here from the same logits and settings (what the latent would have been built from).
        dist = view.dist if view.dist is not None else step_distribution(view.logits, self.sampling)
        k = min(self.top, dist.probs.shape[-1])
        if dist.ids is not None:  # sparse ids are sorted by probability already
            top_probs, top_ids = dist.probs[:, :k], dist.ids[:, :k]
        else:
            top_probs, top_ids = dist.probs.topk(k, dim=-1)
        fed = view.inputs_embeds  # (n, D): exactly what the next forward receives
        sims = (fed.to(self.weight.dtype) @ self.weight.T).float()  # (n, V)
        sims = sims / (self.norms * fed.float().norm(dim=-1, keepdim=True).clamp_min(1e-12))
        near_cos, near_ids = sims.topk(min(self.nearest, sims.shape[-1]), dim=-1)
        columns = (
            view.rows.tolist(),
            top_ids.tolist(),
            top_probs.tolist(),
            near_ids.tolist(),
            near_cos.tolist(),
            view.hybrid.tolist(),
            view.embeds_ratio.tolist(),
            view.hidden_ratio.tolist(),
        )
        for row, ti, tp, ni, nc, hy, a, h in zip(*columns, strict=True):
            log = self.log[row]
            log.top_ids.append(ti)
            log.top_probs.append(tp)
            log.near_ids.append(ni)
            log.near_cos.append(nc)
            log.hybrid.append(hy)
            log.a.append(a)
            log.hidden.append(h)
        self.bar.update(1)


def token_text(tokenizer: PreTrainedTokenizerBase, token_id: int) -> str:
    """A token's own text; its raw vocabulary piece when it decodes to an incomplete UTF-8 sequence."""
    text = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if "\ufffd" in text:
        piece = tokenizer.convert_ids_to_tokens(token_id)
        return piece if isinstance(piece, str) else text
    return text


def _common_prefix(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _pieces(
    tokenizer: PreTrainedTokenizerBase, ids: list[int], delimiter: str
) -> tuple[list[str], list[str]]:
    """Per token: the text it adds and its phase. A piece ending in a partial UTF-8 character waits for the
    token that completes it, so the pieces concatenate to the decoded completion."""
    pieces, phases = [], []
    shown, answer = "", False
    for k in range(len(ids)):
        full = tokenizer.decode(ids[: k + 1], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        answer = answer or (bool(delimiter) and delimiter in full)
        phases.append("answer" if answer else "thinking")
        if full.endswith("\ufffd") and k < len(ids) - 1:
            pieces.append("")
            continue
        # A tokenizer may rewrite earlier text (rare): then the piece starts where the texts agree.
        start = len(shown) if full.startswith(shown) else _common_prefix(shown, full)
        pieces.append(full[start:])
        shown = full
    return pieces, phases


def _score(prompt: LensPrompt, text: str, delimiter: str) -> tuple[bool | None, bool, str, str | None]:
    """``(correct, format_ok, answer, parsed)``; correctness only for a row with a gold answer."""
    fmt = region.delimiter_count(text, delimiter) == 1
    row = prompt.row or {}
    if row.get("gold") in (None, "", []) or row.get("task") not in rewards.TASKS:
        return None, fmt, region.answer_region(text, delimiter), None
    s = rewards.score(
        text,
        row["gold"],
        row["task"],
        choices=row.get("choices"),
        gold_raw=row.get("gold_raw"),
        delimiter=delimiter,
    )
    return s.correct, s.format_ok, s.answer, s.parsed


@torch.no_grad()
def inspect_completions(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    gate: ThinkingGate | None,
    lens_prompts: Sequence[LensPrompt | str],
    config: DecodeConfig,
    top: int = 5,
    nearest: int = 5,
    batch_size: int = 8,
    seed: int = 0,
    progress: str | None = None,
) -> list[CompletionRecord]:
    """Decode ``lens_prompts`` with :func:`hybrid_generate` and return one record per prompt (see module doc).

    A plain string prompt is tokenised as it is (no chat template; :func:`prompt_from_row` builds the HRPO chat
    prompt). ``config`` is the loop's (``hybrid=False`` or ``gate=None``: plain inputs); ``top`` latent candidates and
    ``nearest`` neighbours are kept per token. Prompts are decoded in left-padded batches of ``batch_size``
    (outputs do not depend on the batch); sampled decoding draws row seeds from ``seed``. ``progress``: a tqdm
    bar of decode steps with this description (None: no bar).
    """
    if top < 1 or nearest < 1:
        raise ValueError(f"top and nearest must be >= 1, got {top} and {nearest}")
    items = [
        p if isinstance(p, LensPrompt) else LensPrompt(text=p, label="prompt", question=p)
        for p in lens_prompts
    ]
    device = model.get_input_embeddings().weight.device
    generator = torch.Generator().manual_seed(seed)
    tokenizer.padding_side = "left"
    special = set(tokenizer.all_special_ids)
    records: list[CompletionRecord] = []
    chunks = -(-len(items) // batch_size)
    bar = tqdm(total=chunks * config.max_new_tokens, desc=progress, unit="step", disable=progress is None)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        enc = tokenizer([p.text for p in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
        observer = _Observer(model, len(chunk), config, top, nearest, bar)
        rollout = hybrid_generate(
            model,
            enc.input_ids.to(device),
            enc.attention_mask.to(device),
            gate,
            config,
            tokenizer,
            generator=generator,
            observer=observer,
        )
        bar.update(config.max_new_tokens - rollout.completion_ids.shape[1])  # steps skipped by an early stop
        ids_all, mask_all = rollout.completion_ids.cpu(), rollout.completion_mask.cpu()
        for b, prompt in enumerate(chunk):
            log = observer.log[b]
            ids = ids_all[b][mask_all[b].bool()].tolist()
            pieces, phases = _pieces(tokenizer, ids, config.delimiter)
            tokens = tuple(
                TokenRecord(
                    position=k,
                    token_id=tid,
                    token=token_text(tokenizer, tid),
                    text=pieces[k],
                    phase=phases[k],
                    hybrid=bool(log.hybrid[k]),
                    a=float(log.a[k]),
                    hidden_ratio=float(log.hidden[k]),
                    latent_top=tuple(
                        Candidate(int(i), token_text(tokenizer, int(i)), float(p))
                        for i, p in zip(log.top_ids[k], log.top_probs[k], strict=True)
                    ),
                    nearest=tuple(
                        Candidate(int(i), token_text(tokenizer, int(i)), float(c))
                        for i, c in zip(log.near_ids[k], log.near_cos[k], strict=True)
                    ),
                    special=tid in special,
                )
                for k, tid in enumerate(ids)
            )
            text = tokenizer.decode(ids, skip_special_tokens=True)
            correct, fmt, answer, parsed = _score(prompt, text, config.delimiter)
            records.append(
                CompletionRecord(
                    prompt=prompt,
                    latent=config.hybrid and gate is not None,
                    tokens=tokens,
                    text=text,
                    stop_reason=STOP_NAMES[int(rollout.stop_reason[b])],
                    answer=answer,
                    correct=correct,
                    format_ok=fmt,
                    parsed=parsed,
                )
            )
    bar.close()
    return records


def compare_latent(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    gate: ThinkingGate | None,
    lens_prompts: Sequence[LensPrompt | str],
    config: DecodeConfig,
    progress: bool = False,
    **options: Any,
) -> list[tuple[CompletionRecord, CompletionRecord]]:
    """``(latent on, latent off)`` records per prompt: the same prompts and settings, hybrid inputs or plain.

    ``options`` go to :func:`inspect_completions`; ``progress`` shows a tqdm bar per side. Without a gate both
    sides are plain decoding.
    """
    sides = []
    for hybrid in (True, False):
        label = f"latent {'on' if hybrid else 'off'}" if progress else None
        side_config = replace(config, hybrid=hybrid)
        sides.append(
            inspect_completions(model, tokenizer, gate, lens_prompts, side_config, progress=label, **options)
        )
    return list(zip(*sides, strict=True))


# ---------------------------------------------------------------------------------------------- inputs


def prompt_from_row(
    row: dict[str, Any], tokenizer: PreTrainedTokenizerBase, delimiter: str = "####", label: str = ""
) -> LensPrompt:
    """The HRPO chat prompt of an :mod:`hrpo.data` row (system prompt + the task's user message)."""
    messages = prompts.build_messages(row, delimiter)
    return LensPrompt(
        text=prompts.render_prompt(messages, tokenizer),
        label=label or str(row.get("id", "")),
        question=messages[-1]["content"],
        row=row,
    )


# ---------------------------------------------------------------------------------------------- loading


@dataclass
class LoadedCheckpoint:
    """A checkpoint ready to decode: model (LoRA merged), tokenizer, gate (None for GRPO/base) and settings."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    gate: ThinkingGate | None
    info: CheckpointInfo | None
    """None for a base model loaded without a checkpoint."""
    decoding: DecodingSettings


def load_checkpoint(
    checkpoint_path: str | os.PathLike,
    pretrained: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
) -> LoadedCheckpoint:
    """Load a training output / ``checkpoint-N`` folder the way ``hrpo eval`` does.

    The base model is ``pretrained`` or the one the folder names (:class:`hrpo.checkpoint.CheckpointInfo`); a
    LoRA adapter in the folder is merged (as the eval adapter's default); the gate is loaded when present.
    Raises :class:`hrpo.checkpoint.GateCheckpointError` naming the folder when it cannot be used.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    info = CheckpointInfo.read(checkpoint_path)
    base = pretrained or info.base_model
    if not base:
        raise GateCheckpointError(
            f"{info.folder} does not name its base model (no hrpo_run.json or adapter base); pass --pretrained"
        )
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    if info.has_gate:  # a gate made for another base model is refused before any weights load
        config = AutoConfig.from_pretrained(base)
        read_gate_config(info.folder, int((getattr(config, "text_config", None) or config).hidden_size))
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype).to(device).eval()
    if info.has_adapter:
        from peft import PeftModel

        from hrpo.adapter_check import check_adapter_fits

        check_adapter_fits(info.folder, model)  # another model's adapter: a clear error, not PEFT's traceback
        model = PeftModel.from_pretrained(model, str(info.folder)).merge_and_unload().eval()
    has_tokenizer = any(
        (info.folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")
    )
    tokenizer = AutoTokenizer.from_pretrained(str(info.folder) if has_tokenizer else base)
    hidden = int(model.get_input_embeddings().weight.shape[-1])
    gate = load_gate(info.folder, hidden_size=hidden, device=device).eval() if info.has_gate else None
    return LoadedCheckpoint(model, tokenizer, gate, info, info.decoding)
