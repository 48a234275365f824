"""``python -m hrpo.train``: the ``hrpo train`` verb (:mod:`hrpo.commands.train`) for launchers that take a module.

deepspeed --num_gpus 8 --module hrpo.train --config configs/gsm8k.yaml --deepspeed ds_configs/zero2.json
accelerate launch --config_file ds_configs/accelerate_zero2.yaml -m hrpo.train --config configs/gsm8k.yaml
torchrun --nproc_per_node 2 -m hrpo.train --config configs/gsm8k.yaml --deepspeed ds_configs/zero3.json
"""

import sys

from hrpo.commands.train import (  # noqa: F401  (the names scripts import from hrpo.train)
    TASK_BENCHMARKS,
    HRPOScriptArguments,
    build_dataset,
    build_parser,
    load_training_rows,
    main,
    summarize,
)

if __name__ == "__main__":
    sys.exit(main())
