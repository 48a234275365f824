"""Open-domain QA accept/reject table (issue 11): prefixes, Unicode folding, empty strings never match.

Golds are real NQ-open dev and Bamboogle aliases (``../shared/data/nq_open``, ``../shared/data/bamboogle``)."""

from __future__ import annotations

import logging

import pytest

from hrpo.data import load_benchmark
from hrpo.rewards import eval_metrics, score

# (category, completion, gold aliases, correct, hedged)
ACCEPT = [
    ("exact", "#### Rihanna", ["Rihanna"], True, False),
    ("case and articles", "#### the South Carolina", ["South Carolina"], True, False),
    ("case and articles", "#### JAMES MADISON", ["james madison"], True, False),
    ("any alias", "#### Bob Russell", ["Bobby Scott", "Bob Russell"], True, False),
    ("prefix", "#### The answer is Omar Khayyam.", ["Omar Khayyam"], True, False),
    ("prefix", "#### Answer: David Dinkins", ["David Dinkins"], True, False),
    ("prefix", "#### So the final answer is: Titan IIIE", ["Titan IIIE"], True, False),
    ("accents", "#### Jose Marti", ["José Martí"], True, False),
    ("accents", "#### Beyonce", ["Beyoncé", "Coldplay", "Bruno Mars"], True, False),
    ("quotes", "#### \u201cThe Formation of Vegetable Mould Through the Action of Worms\u201d",
     ["The Formation of Vegetable Mould Through the Action of Worms"], True, False),
    ("quotes", "#### Rihanna\u2019s", ["Rihanna's"], True, False),
    ("dashes", "#### 3-4 April 2018", ["16 March 2018", "3–4 April 2018"], True, False),
    ("dashes", "#### Slalom - (SC)", ["Slalom – (SC)"], True, False),
    ("non-breaking space", "#### January 31, 2018", ["January\xa031,\xa02018"], True, False),
    ("name with and", "#### Trinidad and Tobago", ["Trinidad and Tobago"], True, False),
    ("answer line first", "#### 1999\nIt was released in January.", ["1999", "January\xa015,\xa01999"], True, False),
]  # fmt: skip
REJECT = [
    ("wrong", "#### John Adams", ["James Madison"], False, False),
    ("wrong", "#### 2016", ["2017"], False, False),
    ("empty answer", "####", ["---"], False, False),
    ("empty answer", "#### ---", ["---", ")"], False, False),
    ("empty answer", "#### the", ["A+", "AB+"], False, False),
    ("empty answer", "#### !!!", ["a rotationally symmetric saltire", "the symbol ×", "*"], False, False),
    ("hedge", "#### Bobby Scott or Bob Russell", ["Bobby Scott", "Bob Russell"], False, True),
    ("hedge", "#### Beyoncé, Coldplay", ["Beyoncé", "Coldplay", "Bruno Mars"], False, True),
    ("hedge", "#### Rihanna; Beyonce", ["Rihanna"], False, True),
    ("hedge", "#### Paris / London", ["London"], False, True),
    ("hedge on a later line", "#### Rihanna\nor maybe Adele", ["Rihanna"], False, True),
    ("trailing prose not read", "#### Adele\nActually it was Rihanna.", ["Rihanna"], False, False),
]


@pytest.mark.parametrize(("category", "completion", "gold", "correct", "hedged"), ACCEPT + REJECT)
def test_qa_table(category, completion, gold, correct, hedged):
    s = score(completion, gold, "qa")
    assert (s.correct, s.hedged) == (correct, hedged), (category, s)
    assert (s.f1 == 1.0) if correct else (s.f1 < 1.0)


def test_golds_are_real(shared_data):
    nq = [r["gold"] for r in load_benchmark("nq", "test", data_dir=shared_data)]
    bamboogle = [r["gold"] for r in load_benchmark("bamboogle", "test", data_dir=shared_data)]
    for *_, gold, _, _ in ACCEPT + REJECT:
        if gold not in (["Omar Khayyam"], ["José Martí"], ["Trinidad and Tobago"], ["Rihanna's"], ["London"]):
            assert gold in nq or gold in bamboogle or set(gold) < {a for g in nq + bamboogle for a in g}, gold


def test_empty_aliases_are_dropped_with_a_warning(caplog):
    aliases = ["+-+!", "\u2014 \u2014", "Rihanna"]  # unseen elsewhere: each alias is warned about once
    with caplog.at_level(logging.WARNING, logger="hrpo.scoring.qa"):
        assert not score("####", aliases, "qa").correct
        assert not score("#### ---", aliases, "qa").correct
        assert score("#### Rihanna", aliases, "qa").correct
    assert caplog.text.count("normalises to an empty string") == 2
    assert "'+-+!'" in caplog.text
    assert eval_metrics({"gold": ["---"], "task": "qa"}, "####")["exact_match"] == 0.0
