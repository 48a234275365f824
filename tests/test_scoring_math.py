"""MATH accept/reject table (issue 11), math-verify defaults and its hard timeout.

Golds are real MATH500 answers (``../shared/data/math500/test.jsonl``), and a few from the full MATH test set
(``19 \\text{ and }43``)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from hrpo.rewards import score
from hrpo.scoring import verify

# (category, completion, gold, correct, hedged); math-verify is on (the fixed default)
ACCEPT = [
    ("boxed", "#### \\boxed{\\frac{14}{3}}", "\\frac{14}{3}", True, False),
    ("boxed", "work \\boxed{9} #### $\\boxed{9}$", "9", True, False),
    ("span", "#### $\\frac{3}{56}$", "\\frac{3}{56}", True, False),
    ("span", "#### The answer is $6 - 5i$.", "6 - 5i", True, False),
    ("bare latex", "#### 3\\sqrt{13}", "3\\sqrt{13}", True, False),
    (
        "bare latex",
        "#### \\left(3, \\frac{\\pi}{2}\\right)",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        True,
        False,
    ),
    ("negative fraction", "#### -3/8", "-\\frac{3}{8}", True, False),
    ("negative fraction", "#### \\boxed{\\frac{-35}{9}}", "-\\frac{35}{9}", True, False),
    ("negative fraction", "#### $-\\dfrac{24}{25}$", "-\\frac{24}{25}", True, False),
    ("decimal vs fraction", "#### \\boxed{0.25}", "\\frac{1}{4}", True, False),
    ("decimal vs fraction", "#### 3/20", "0.15", True, False),
    ("thousands", "#### 8,000", "8000", True, False),
    ("thousands", "#### 10080", "10,\\!080", True, False),
    ("base subscript", "#### 52_{8}", "52_8", True, False),
    ("base subscript", "#### \\boxed{4210_5}", "4210_{5}", True, False),
    ("currency", "#### \\$36.00", "\\$36", True, False),
    ("currency", "#### $\\$18.90$", "\\$18.90", True, False),
    ("letter", "#### B", "\\text{(B)}", True, False),
    ("letter", "#### (C)", "\\text{(C)}", True, False),
    ("text", "#### Evelyn", "\\text{Evelyn}", True, False),
    ("text", "#### \\boxed{\\text{east}}", "\\text{east}", True, False),
    ("units and degrees", "#### 90", "90^\\circ", True, False),
    ("units and degrees", "#### 5.4 cents", "5.4 \\text{ cents}", True, False),
    ("units and degrees", "#### \\frac{270}{7}", "\\frac{270}7\\text{ degrees}", True, False),
    ("equation prefix", "#### x = 5", "x=5", True, False),
    ("list gold", "#### 3, 5, 7", "3, 5, 7", True, False),
    ("list gold", "#### 19 and 43", "19 \\text{ and }43", True, False),
    ("interval", "#### (3, 4]", "(3,4]", True, False),
    (
        "matrix",
        "#### \\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        True,
        False,
    ),
    ("same value repeated", "#### $x = 5$, so $5$", "5", True, False),
    ("same value repeated", "#### $\\frac{1}{2}$ (that is $0.5$)", "\\frac{1}{2}", True, False),
    ("math-verify", "#### \\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True, False),
    ("math-verify", "#### 11\\sqrt{2}", "\\sqrt{242}", True, False),
    ("math-verify", "#### y = \\sqrt{8}", "2\\sqrt{2}", True, False),
    ("open span on the next line", "#### $$\n\\frac{14}{3}\n$$", "\\frac{14}{3}", True, False),
]
REJECT = [
    ("wrong", "#### \\boxed{3}", "4", False, False),
    ("wrong", "#### \\frac{1}{3}", "\\frac{1}{2}", False, False),
    ("no last-number fallback", "#### 7^{2}", "2", False, False),
    ("no last-number fallback", "#### 3*5", "5", False, False),
    ("no last-number fallback", "#### \\frac{1}{2}", "2", False, False),
    ("no rounding", "#### \\boxed{2.0000001}", "2", False, False),
    ("hedge: spans", "#### $4$ or $5$", "5", False, True),
    ("hedge: spans", "#### $5$ or 4", "5", False, True),
    ("hedge: text or", "#### 5 \\text{ or } 6", "5", False, True),
    ("hedge: text or", "#### \\boxed{5 \\text{ or } 6}", "5", False, True),
    ("hedge: boxes", "#### \\boxed{4} \\text{ or } \\boxed{5}", "5", False, True),
    ("hedge: text or", "#### \\boxed{\\text{east or west}}", "\\text{east}", False, True),
    ("hedge: and/comma", "#### 4 and 5", "5", False, True),
    ("hedge: outside the box", "#### \\boxed{5} or 6", "5", False, True),
    ("hedge: layout", "#### 5 \\\\ 6", "5", False, True),  # math-verify alone calls "5 \\ 6" equal to 5
    ("hedge: layout", "#### 5 \\quad 6", "5", False, True),
    ("hedge: and/comma", "#### \\boxed{4, 5}", "4", False, True),
    ("hedge: later line", "#### \\frac{14}{3}\nor maybe \\frac{3}{14}", "\\frac{14}{3}", False, True),
    ("list gold needs the list", "#### 3, 5", "3, 5, 7", False, False),
    # math-verify alone is lenient with these (text content, right-hand sides, "approx", stray "$")
    ("not for math-verify", "#### 5 \\text{ maybe 6}", "5", False, False),
    ("not for math-verify", "#### 5 \\text{ (or 6)}", "5", False, True),
    ("not for math-verify", "#### 6 = 5", "5", False, False),
    ("not for math-verify", "#### x = 6 = 5", "5", False, False),
    ("not for math-verify", "#### 5 \\approx 6", "5", False, False),
    ("not for math-verify", "#### 5 $6", "5", False, False),
    ("not for math-verify", "#### 5 \\dots", "5", False, False),
    ("trailing prose not read", "#### 6\nThe gold is 9.", "9", False, False),
    ("empty", "####", "9", False, False),
]


@pytest.mark.parametrize(("category", "completion", "gold", "correct", "hedged"), ACCEPT + REJECT)
def test_math_table(category, completion, gold, correct, hedged):
    s = score(completion, gold, "math")
    assert (s.correct, s.hedged) == (correct, hedged), (category, s)


def test_math_verify_cases_need_math_verify():
    pytest.importorskip("math_verify")
    for category, completion, gold, *_ in ACCEPT:
        if category == "math-verify":
            assert not score(completion, gold, "math", math_verify=False).correct
            assert score(completion, gold, "math", math_verify=True).correct


def test_string_rules_need_no_math_verify():
    # everything but the math-verify rows is decided by the normaliser alone
    for category, completion, gold, correct, _ in ACCEPT + REJECT:
        if category != "math-verify":
            assert score(completion, gold, "math", math_verify=False).correct == correct, completion


PATHOLOGICAL = "9^{9^{9^{9}}}+1"  # sympy tries to compute a 370-million-digit power


def test_pathological_expression_times_out_from_a_worker_thread_and_falls_back():
    pytest.importorskip("math_verify")
    assert verify.equal("\\frac{1}{2}", "0.5", timeout=60) is True  # worker started and warm
    result: list = []

    def call():
        start = time.monotonic()
        s = score(f"#### {PATHOLOGICAL}", "1", "math", verify_timeout=1.0)
        result.append((s, time.monotonic() - start))

    before = verify._VERIFIER.timeouts
    worker = threading.Thread(target=call)  # not the main thread: signal-based timeouts would not work here
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "a reward call hung"
    s, elapsed = result[0]
    assert not s.correct and elapsed < 10
    assert verify._VERIFIER.timeouts == before + 1
    # the killed worker was replaced: the next check works
    assert verify.equal("2\\sqrt{2}", "\\sqrt{8}", timeout=60) is True


def test_verify_is_thread_safe():
    pytest.importorskip("math_verify")
    pairs = [(f"\\frac{{{k}}}{{{k + 1}}}", f"{k}/{k + 1}") for k in range(1, 9)]
    out: dict[int, bool | None] = {}
    threads = [
        threading.Thread(target=lambda i=i, g=g, p=p: out.__setitem__(i, verify.equal(g, p, timeout=60)))
        for i, (g, p) in enumerate(pairs)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert out == dict.fromkeys(range(len(pairs)), True)


def test_a_forked_child_uses_its_own_worker_and_the_parent_keeps_its_own():
    pytest.importorskip("math_verify")
    assert verify.equal("1", "1.0", timeout=60) is True  # the parent's worker is up
    pid = os.fork()
    if pid == 0:  # child: the parent's pipes were dropped at fork; a new worker answers
        fresh = verify._VERIFIER._worker is None
        ok = fresh and verify.equal("\\frac{3}{6}", "\\frac{7}{14}", timeout=60) is True
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert verify.equal("\\frac{5}{10}", "\\frac{9}{18}", timeout=60) is True


def test_math_verify_alone_would_pay_those_answers():
    # why the gate in math_answer._for_math_verify exists (math-verify 0.9 extracts leniently)
    pytest.importorskip("math_verify")
    lenient = ["5 \\text{ maybe 6}", "6 = 5", "5 \\approx 6", "5 \\text{ (or 6)}", "5\\\\6"]
    assert sum(bool(verify.equal("5", c, timeout=60)) for c in lenient) >= 3


def test_a_worker_that_cannot_start_disables_math_verify_once(tmp_path, monkeypatch):
    broken = tmp_path / "worker.py"
    broken.write_text("raise SystemExit(1)\n")
    monkeypatch.setattr(verify, "_WORKER", str(broken))
    monkeypatch.setattr(verify, "available", lambda: True)
    v = verify.Verifier()
    assert v.equal("1", "1.0") is None  # no answer: the caller keeps its string match
    assert v._broken and v._worker is None
    assert v.equal("2", "2.0") is None and v._worker is None  # no new process per call
