"""``python -m hrpo.eval``: the ``hrpo eval`` verb (:mod:`hrpo.commands.eval`) for launchers that take a module.

accelerate launch -m hrpo.eval --checkpoint_path runs/gsm8k --tasks hrpo_stem   # data parallel
"""

import sys

from hrpo.commands.eval import main

if __name__ == "__main__":
    sys.exit(main())
