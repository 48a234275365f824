"""Delimiter/stop-string detection over a trailing token window."""

import pytest
import torch

from hrpo.text_watch import SubstringWatcher


def _ids(tokenizer, pieces):
    ids = []
    for piece in pieces:
        piece_ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(piece))
        assert len(piece_ids) == 1, (piece, piece_ids)
        ids.extend(piece_ids)
    return ids


def scan_all_prefixes(watcher, ids):
    """First step (1-based) at which the watcher fires when fed ``ids`` one token at a time."""
    for k in range(1, len(ids) + 1):
        if watcher.scan(torch.tensor([ids[:k]]), torch.tensor([True]))[0]:
            return k
    return None


def test_delimiter_split_over_tokens(qwen_tokenizer):
    watcher = SubstringWatcher(qwen_tokenizer, ["####"])
    assert scan_all_prefixes(watcher, _ids(qwen_tokenizer, ["so", "##", "##", "5"])) == 3
    assert scan_all_prefixes(watcher, _ids(qwen_tokenizer, ["#", "###", "5"])) == 2
    assert scan_all_prefixes(watcher, _ids(qwen_tokenizer, [" ####", "5"])) == 1  # fused with a space
    assert scan_all_prefixes(watcher, _ids(qwen_tokenizer, ["##", " ", "##"])) is None  # "## ##" is not it


def test_window_is_bounded_but_finds_late_occurrences(qwen_tokenizer):
    watcher = SubstringWatcher(qwen_tokenizer, ["####"])
    filler = _ids(qwen_tokenizer, [" a"]) * 200
    ids = filler + _ids(qwen_tokenizer, ["##", "##"])
    assert scan_all_prefixes(watcher, ids) == len(ids)
    assert watcher.window == 20


def test_only_requested_rows_are_scanned(qwen_tokenizer):
    watcher = SubstringWatcher(qwen_tokenizer, ["####"])
    ids = torch.tensor([_ids(qwen_tokenizer, ["####"]), _ids(qwen_tokenizer, ["####"])])
    assert watcher.scan(ids, torch.tensor([False, True])).tolist() == [False, True]


class SpyTokenizer:
    """Counts batch_decode calls of a real tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer, self.calls = tokenizer, 0

    def batch_decode(self, *args, **kwargs):
        self.calls += 1
        return self.tokenizer.batch_decode(*args, **kwargs)


@pytest.mark.parametrize("name", ["qwen_tokenizer", "smol_tokenizer"])
def test_tokens_without_target_characters_are_not_decoded(name, request):
    tokenizer = request.getfixturevalue(name)
    watcher = SubstringWatcher(tokenizer, ["####"])
    ids = _ids(tokenizer, ["so"]) + tokenizer.convert_tokens_to_ids(tokenizer.tokenize("####"))
    assert watcher.may_end(ids) == [False] + [True] * (len(ids) - 1)
    watcher.tokenizer = spy = SpyTokenizer(tokenizer)
    assert not watcher.scan(torch.tensor([ids[:1]]), torch.tensor([True]))[0]
    assert spy.calls == 0  # "so" is known not to hold '#': nothing decoded
    assert watcher.scan(torch.tensor([ids]), torch.tensor([True]))[0]


def test_only_tokens_holding_a_last_character_are_decoded(qwen_tokenizer):
    watcher = SubstringWatcher(qwen_tokenizer, ["<|im_end|>", "</s>"])
    ids = _ids(qwen_tokenizer, ["end", "<", "|", ">\n", "s"])
    assert watcher.may_end(ids) == [False, False, False, True, False]
    assert scan_all_prefixes(watcher, _ids(qwen_tokenizer, ["so", "</", "s", ">", "x"])) == 4


def test_targets_ending_in_whitespace_always_decode(smol_tokenizer):
    watcher = SubstringWatcher(smol_tokenizer, ["Question:\n"])
    assert watcher.may_end([1, 2, 3]) == [True, True, True]


def test_a_multibyte_character_split_over_tokens_is_found(qwen_tokenizer):
    watcher = SubstringWatcher(qwen_tokenizer, ["é#"])
    ids = qwen_tokenizer.encode("é#", add_special_tokens=False)
    assert scan_all_prefixes(watcher, ids) == len(ids)
