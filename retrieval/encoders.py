"""Text encoders: any HF encoder with mean or CLS pooling, L2-normalised, with e5-style prefixes.

``EncoderSpec`` is what an index records in ``meta.json``; ``Encoder`` runs it. Texts are sorted by token
length before batching so a batch pads to similar lengths (this is where the speed comes from on CPU), and
results are returned in input order. On CUDA the model runs in fp16.

Defaults per model family (overridable): e5 -> mean pooling and ``query: ``/``passage: `` prefixes (as the
e5 model card and Search-R1 use them); bge -> CLS pooling; a sentence-transformers folder -> the pooling in
its ``1_Pooling/config.json``. The offline default ``minilm`` is all-MiniLM-L6-v2 (mean pooling, 384-d), an alias
that an installed package resolves to a folder (:func:`model_path`); this package imports no other part of hrpo.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

MINILM_ALIAS = "minilm"
ALIAS_GROUP = "hrpo.retrieval.encoders"
"""Entry-point group of encoder aliases (name -> a callable returning a local model folder)."""
POOLINGS = ("mean", "cls")


class EncoderMismatchError(ValueError):
    """The encoder asked for is not the one an index was built with."""


@dataclass(frozen=True)
class EncoderSpec:
    """How to embed text. ``model`` is a hub id, a local folder, or ``"minilm"`` (offline default)."""

    model: str = MINILM_ALIAS
    pooling: str = "mean"
    query_prefix: str = ""
    passage_prefix: str = ""
    max_length: int = 256
    normalize: bool = True

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EncoderSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def model_path(model: str) -> str:
    """A hub id or folder for ``from_pretrained``: short names (aliases) resolve to the folder their provider gives.

    An alias is an entry point in the group :data:`ALIAS_GROUP` whose object, called without arguments, returns
    a local folder; ``hrpo`` provides ``minilm`` (the offline all-MiniLM-L6-v2 of ``assets.txt``). Index metadata
    keeps the alias, not the folder, so an index stays usable where the asset lives elsewhere. Existing paths
    and names that are no alias pass through unchanged.
    """
    if "/" in model or Path(model).exists():
        return model
    for entry in importlib.metadata.entry_points(group=ALIAS_GROUP, name=model):
        return str(entry.load()())
    if model == MINILM_ALIAS:
        raise ValueError(
            f"encoder alias {model!r} has no provider: install hrpo (it declares the entry point "
            f"{ALIAS_GROUP}:{model}) or pass the model folder or hub id instead"
        )
    return model


def _st_pooling(folder: Path) -> str | None:
    """Pooling declared by a sentence-transformers folder, or None if it is not one (or pools otherwise)."""
    cfg = folder / "1_Pooling" / "config.json"
    if not cfg.is_file():
        return None
    d = json.loads(cfg.read_text())
    if d.get("pooling_mode_cls_token"):
        return "cls"
    if d.get("pooling_mode_mean_tokens"):
        return "mean"
    return None


def resolve_spec(
    model: str = MINILM_ALIAS,
    pooling: str | None = None,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    max_length: int = 256,
) -> EncoderSpec:
    """An :class:`EncoderSpec` with family defaults filled in for every argument left as None."""
    name = model.lower()
    is_e5 = "e5" in Path(name).name or "/e5-" in name
    st_pool = _st_pooling(Path(model_path(model))) if Path(model_path(model)).is_dir() else None
    if pooling is None:
        pooling = st_pool or ("cls" if "bge" in name else "mean")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if query_prefix is None:
        query_prefix = "query: " if is_e5 else ""
    if passage_prefix is None:
        passage_prefix = "passage: " if is_e5 else ""
    return EncoderSpec(model, pooling, query_prefix, passage_prefix, max_length)


def check_compatible(built: dict, asked: EncoderSpec, fingerprint: str | None, where: str) -> None:
    """Raise :class:`EncoderMismatchError` if ``asked`` (and its weights) differ from the index's encoder."""
    problems = []
    for key in ("pooling", "query_prefix", "passage_prefix", "normalize"):
        if built.get(key) != getattr(asked, key):
            problems.append(f"{key}: index {built.get(key)!r} vs requested {getattr(asked, key)!r}")
    if fingerprint is not None and built.get("fingerprint") not in (None, fingerprint):
        problems.append(f"weights: index fingerprint {built.get('fingerprint')} vs requested {fingerprint}")
    if problems:
        raise EncoderMismatchError(
            f"index {where} was built with encoder {built.get('model')!r} but encoder {asked.model!r} was "
            f"requested ({'; '.join(problems)}). Query vectors from a different encoder are meaningless "
            f"against this index: drop --encoder to use the index's own encoder, or rebuild the index."
        )


class Encoder:
    """Embeds texts with an HF ``AutoModel``: ``encode(texts, kind) -> float32 (n, dim)``, rows L2-normalised."""

    def __init__(self, spec: EncoderSpec, device: str | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.spec = spec
        path = model_path(spec.model)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, dtype=torch.float32)
        self.fingerprint = _fingerprint(model)
        if self.device.startswith("cuda"):
            model = model.half()  # fp16 halves memory and roughly doubles throughput on GPU
        self.model = model.to(self.device).eval()
        self.dim = int(model.config.hidden_size)

    def encode(
        self,
        texts: list[str],
        kind: str = "passage",
        batch_size: int = 64,
        show_progress: bool = False,
        progress=None,
    ) -> np.ndarray:
        """Embed ``texts`` (``kind`` is ``"query"`` or ``"passage"``, selecting the prefix) -> (n, dim) float32.

        ``progress``: an existing tqdm bar to advance per batch (a long build shows one bar over all chunks).
        """
        import torch
        from tqdm.auto import tqdm

        if kind not in ("query", "passage"):
            raise ValueError(f"kind must be 'query' or 'passage', got {kind!r}")
        prefix = self.spec.query_prefix if kind == "query" else self.spec.passage_prefix
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        # Tokenise once without padding (Rust backend) to sort by true token length, then pad each batch with
        # numpy: batches hold similar lengths so padding wastes little, and no per-batch re-tokenisation is needed.
        enc = self.tokenizer(
            [prefix + t for t in texts], truncation=True, max_length=self.spec.max_length, padding=False
        )
        ids = enc["input_ids"]
        types = enc.get("token_type_ids")
        pad_id = self.tokenizer.pad_token_id or 0
        order = np.argsort([-len(x) for x in ids], kind="stable")
        owns_bar = progress is None
        bar = (
            tqdm(total=len(texts), desc=f"encode {kind}s", unit="text", disable=not show_progress)
            if owns_bar
            else progress
        )
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                length = len(ids[idx[0]])  # longest in the batch (sorted descending)
                input_ids = np.full((len(idx), length), pad_id, dtype=np.int64)
                mask = np.zeros((len(idx), length), dtype=np.int64)
                for j, i in enumerate(idx):
                    input_ids[j, : len(ids[i])] = ids[i]
                    mask[j, : len(ids[i])] = 1
                batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
                if types is not None:  # BERT-style segment ids (all zeros for single texts)
                    batch["token_type_ids"] = torch.zeros_like(batch["input_ids"])
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self.model(**batch).last_hidden_state  # (b, L, dim)
                emb = _pool(hidden, batch["attention_mask"], self.spec.pooling)  # (b, dim)
                if self.spec.normalize:
                    emb = torch.nn.functional.normalize(emb.float(), dim=-1)
                out[idx] = emb.float().cpu().numpy()
                bar.update(len(idx))
        if owns_bar:
            bar.close()
        return out


def _pool(hidden, mask, pooling: str):
    """(b, L, dim) hidden states and (b, L) mask -> (b, dim) by masked mean or the first ([CLS]) token."""
    if pooling == "cls":
        return hidden[:, 0]
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


def _fingerprint(model) -> str:
    """Identity of the weights, independent of where they were loaded from: config + a weight checksum."""
    cfg = {
        k: v for k, v in model.config.to_dict().items() if k not in ("_name_or_path", "transformers_version")
    }
    emb = model.get_input_embeddings().weight.detach()
    stat = f"{emb.shape}:{float(emb[:256].double().sum()):.4f}:{float(emb[:256].double().abs().sum()):.4f}"
    blob = json.dumps(cfg, sort_keys=True, default=str) + stat
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
