"""math-verify worker process (run as a script by :mod:`hrpo.scoring.verify`; not imported by hrpo).

Protocol: one JSON request per stdin line, ``[gold, prediction]`` (LaTeX, each wrapped in ``$..$`` by the
client); one reply per stdout line: ``1`` equal, ``0`` not equal or unparsable. ``ready`` is printed once the
imports are done. math-verify's own signal timeouts are off: the client kills this process instead.
"""

import json
import sys


def main() -> None:
    from math_verify import parse, verify

    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for line in sys.stdin:
        try:
            gold, pred = json.loads(line)
            ok = verify(
                parse(gold, parsing_timeout=None), parse(pred, parsing_timeout=None), timeout_seconds=None
            )
        except Exception:  # any parse/verify failure is "not shown equal"
            ok = False
        out.write("1\n" if ok else "0\n")
        out.flush()


if __name__ == "__main__":
    main()
