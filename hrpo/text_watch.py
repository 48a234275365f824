"""Find strings (the answer delimiter, stop strings) in text being generated, one token at a time.

The authors' code re-decoded every sequence's whole completion after every step to test ``"####" in text``:
O(C^2) tokenizer work per sequence. Here each step decodes only a short trailing window of the newest tokens.
That finds every occurrence that ends in the newest token, which is all that matters because the states it
drives are sticky (thinking ends for good; a stopped row stays stopped): an occurrence that ended earlier was
already seen at its own step. Decoding text (not matching token ids) keeps it correct when ``####`` is split
over several tokens or fused into one such as ``" ####"``.

Most steps need no decoding at all: an occurrence that ends in the newest token has its last character in
that token, so a newest token whose own text holds no target's last character (``#`` for ``####``, ``>`` for
``<|im_end|>``) and no incomplete byte sequence cannot end one. Each token id's own text is decoded once per
watcher and remembered. Targets ending in whitespace skip this shortcut (some tokenizers drop a token's leading
space when it is decoded alone).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase


class SubstringWatcher:
    """Detects target strings in the trailing ``window`` tokens of each row's generated ids."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, targets: Sequence[str], window: int | None = None):
        self.tokenizer = tokenizer
        self.targets = [t for t in targets if t]
        longest = max((len(t) for t in self.targets), default=0)
        # Every token decodes to >= 1 character, except byte-fallback pieces of a multi-byte character (<= 4
        # per character); 4 tokens per character plus slack covers any occurrence ending in the newest token.
        self.window = window if window is not None else 4 * longest + 4
        self._chars = {t[-1] for t in self.targets}  # an occurrence ending in a token holds its last char
        self._shortcut = not any(c.isspace() for c in self._chars)
        self._may_end: dict[int, bool] = {}  # token id -> its own text could end an occurrence

    def __bool__(self) -> bool:
        return bool(self.targets)

    def may_end(self, token_ids: list[int]) -> list[bool]:
        """For each id: False only if an occurrence of a target provably cannot end in that token."""
        if not self._shortcut:
            return [True] * len(token_ids)
        unseen = [t for t in dict.fromkeys(token_ids) if t not in self._may_end]
        if unseen:
            texts = self.tokenizer.batch_decode(
                [[t] for t in unseen], skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
            for token, text in zip(unseen, texts, strict=True):
                self._may_end[token] = not text or "\ufffd" in text or not self._chars.isdisjoint(text)
        return [self._may_end[t] for t in token_ids]

    def scan(self, generated: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Rows (among ``rows``, a ``(B,)`` bool mask) whose trailing text has a target ending in the newest token.

        ``generated``: ``(B, k)`` ids generated so far, newest last (the last ``window`` columns suffice).
        Returns ``(B,)`` bool.
        """
        found = torch.zeros(generated.shape[0], dtype=torch.bool)
        if not self.targets or not bool(rows.any()) or generated.shape[1] == 0:
            return found
        index = rows.nonzero().squeeze(-1).tolist()
        newest = generated[index, -1].tolist()
        index = [row for row, ok in zip(index, self.may_end(newest), strict=True) if ok]
        if not index:
            return found
        window = generated[index, max(0, generated.shape[1] - self.window) :].tolist()
        texts = self.tokenizer.batch_decode(
            window, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        for row, text in zip(index, texts, strict=True):
            if any(target in text for target in self.targets):
                found[row] = True
        return found
