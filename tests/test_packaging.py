"""The wheel works outside the checkout: built from the sources, installed (not editable), run from elsewhere.

The repository folders ``tasks/`` and ``retrieval/`` install as ``hrpo.tasks`` and ``hrpo.retrieval`` (setup.py,
pyproject's ``package-dir``). The slow test installs the wheel into a fresh virtual environment and, from a
folder outside the checkout, runs ``hrpo demo --smoke`` (train, ``hrpo retrieval build``, two ``hrpo eval``
runs, the leaderboard), ``hrpo eval`` on the demo's tiny checkpoint and local data, and ``hrpo retrieval
build`` + ``search``.

Why the fresh environment reuses the installed dependencies: a second full install of the pinned stack
(torch, DeepSpeed, lm-eval, ... 2.2 GB) took 249-491 s on the 2-core dev machine (``pip install -c
constraints.txt <wheel>`` into a new venv, twice, from local wheel mirrors: most of it is unpacking, which a
warm pip cache does not save) against ~7 s for the venv below, and it would prove nothing about hrpo. The new venv
sees the dependencies of the test's own environment through a folder of links to its site-packages, with
hrpo's editable install (its finder, ``.pth`` and metadata) left out, so the only ``hrpo`` it can import is
the wheel's. pip still resolves the wheel's declared requirements against ``constraints.txt`` (with
``--no-index``: a requirement the README's install did not satisfy fails here instead of downloading), and the
test asserts that ``hrpo``, ``hrpo.retrieval`` and the task folder load from the new venv and that no
top-level ``retrieval`` package exists there.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SOURCES = ["hrpo", "retrieval", "tasks", "pyproject.toml", "setup.py", "README.md"]
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")


def build_wheel(dest: Path) -> Path:
    """Build the wheel from a copy of the sources (so the checkout gets no build/ folder) -> its path."""
    src = dest / "src"
    for name in SOURCES:
        copy = shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy2
        copy(REPO_ROOT / name, src / name, **({"ignore": IGNORE} if copy is shutil.copytree else {}))
    code = "import sys; from setuptools import build_meta; print(build_meta.build_wheel(sys.argv[1]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, str(dest)], cwd=src, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dest / proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_checkout_resolves_the_packaged_names_to_the_repository_folders():
    import hrpo.retrieval
    from hrpo.commands.eval import tasks_dir

    assert Path(hrpo.retrieval.__file__).parent == REPO_ROOT / "retrieval"
    assert tasks_dir() == REPO_ROOT / "tasks"


def test_wheel_holds_tasks_retrieval_and_entry_points_under_hrpo(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"hrpo/tasks/{p.name}" for p in (REPO_ROOT / "tasks").iterdir() if p.is_file()}
    expected |= {f"hrpo/retrieval/{p.name}" for p in (REPO_ROOT / "retrieval").iterdir() if p.is_file()}
    expected |= {p.relative_to(REPO_ROOT).as_posix() for p in (REPO_ROOT / "hrpo").rglob("*.py")}
    expected |= {"hrpo/py.typed", "hrpo/resources/paper_results.json"}
    assert not expected - names, f"missing from the wheel: {sorted(expected - names)}"
    assert {n.split("/")[0] for n in names} == {
        "hrpo",
        "hrpo-0.1.0.dist-info",
    }  # no top-level retrieval/tasks
    entry_points = configparser.ConfigParser()
    entry_points.read_string(zipfile.ZipFile(wheel).read("hrpo-0.1.0.dist-info/entry_points.txt").decode())
    assert entry_points["console_scripts"]["hrpo"] == "hrpo.cli:main"
    assert entry_points["lm_eval.models"]["hrpo"] == "hrpo.lm_eval_adapter:HRPOLM"
    assert entry_points["hrpo.retrieval.encoders"]["minilm"] == "hrpo.assets:minilm_path"


def _dependency_links(dest: Path) -> Path:
    """Links to everything in this environment's site-packages except hrpo's own (editable) install."""
    dest.mkdir(parents=True)
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.lower()
        if name.startswith(("hrpo", "__editable__")) or name in ("retrieval", "tasks"):
            continue
        (dest / entry.name).symlink_to(entry)
    return dest


@pytest.fixture(scope="module")
def wheel_venv(wheel, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wheel_venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    # inside the venv and named site-packages: libraries that ask whether a module is installed (dill, used by
    # datasets to hash functions, pickles other modules by value) must see these as installed, as they are
    deps = _dependency_links(venv / "dependencies" / "site-packages")
    (Path(purelib) / "_hrpo_test_dependencies.pth").write_text(
        f"import site; site.addsitedir({str(deps)!r})\n"
    )
    install = [
        python,
        "-m",
        "pip",
        "install",
        "--no-index",
        "-c",
        str(REPO_ROOT / "constraints.txt"),
        str(wheel),
    ]
    proc = subprocess.run(install, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (venv / "bin" / "hrpo").is_file()
    return venv


def _env(venv: Path, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    env.update(HF_DATASETS_CACHE=str(work / "hf_datasets"), PYTHONDONTWRITEBYTECODE="1")
    return env


def _run(cmd: list[str], work: Path, env: dict[str, str], timeout: int = 900) -> str:
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    for folder in ("hrpo", "tasks", "retrieval"):  # nothing ran from the checkout
        assert str(REPO_ROOT / folder) not in proc.stdout + proc.stderr, (cmd, folder)
    return proc.stdout


@pytest.mark.slow
def test_installed_wheel_runs_demo_eval_and_retrieval_outside_the_checkout(wheel_venv, tmp_path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = _env(wheel_venv, work)
    hrpo = str(wheel_venv / "bin" / "hrpo")

    probe = (
        "import importlib.metadata as md, importlib.util, json, hrpo, hrpo.retrieval\n"
        "from hrpo.commands.eval import tasks_dir\n"
        "from hrpo.retrieval.encoders import model_path\n"
        "(model,) = md.entry_points(group='lm_eval.models', name='hrpo')\n"
        "cls = model.load()\n"
        "print(json.dumps({'hrpo': hrpo.__file__, 'retrieval': hrpo.retrieval.__file__, 'tasks': str(tasks_dir()),"
        " 'model': cls.__module__ + ':' + cls.__name__, 'model_file': importlib.util.find_spec(cls.__module__).origin,"
        " 'top_level_retrieval': importlib.util.find_spec('retrieval') is not None,"
        " 'minilm': model_path('minilm')}))"
    )
    where = json.loads(_run([str(wheel_venv / "bin" / "python"), "-c", probe], work, env).splitlines()[-1])
    for key in ("hrpo", "retrieval", "tasks", "model_file"):
        assert Path(where[key]).is_relative_to(wheel_venv), (key, where[key])
    assert (Path(where["tasks"]) / "hrpo_gsm8k.yaml").is_file()
    assert where["model"] == "hrpo.lm_eval_adapter:HRPOLM" and not where["top_level_retrieval"]
    assert Path(where["minilm"], "config.json").is_file()

    # the whole pipeline: train, `hrpo retrieval build`, `hrpo eval` twice (tasks/ YAMLs + utils.py), leaderboard
    out = _run([hrpo, "demo", "--smoke", "--output_dir", "demo"], work, env)
    assert f"Everything is in {work / 'demo'}" in out
    assert "| base |" in (work / "demo" / "leaderboard.md").read_text()

    # `hrpo eval` with relative paths on the demo's tiny checkpoint and its local GSM8K folder
    _run([hrpo, "eval", "--checkpoint_path", "demo/hrpo-checkpoint", "--tasks", "hrpo_gsm8k", "--data_dir",
          "demo/data", "--limit", "2", "--batch_size", "2", "--device", "cpu", "--gen_kwargs", "max_gen_toks=8",
          "--output_path", "eval-wheel"], work, env)  # fmt: skip
    [results] = (work / "eval-wheel").glob("*/results_*.json")
    scores = json.loads(results.read_text())["results"]["hrpo_gsm8k"]
    assert scores["sample_len"] == 2 and "exact_match,none" in scores

    # `hrpo retrieval build` + `search`: a passage's own text finds it first
    corpus = work / "demo" / "rag" / "corpus.jsonl"
    first = json.loads(corpus.read_text().splitlines()[0])
    _run([hrpo, "retrieval", "build", "--corpus", "demo/rag/corpus.jsonl", "--out", "index", "--max_passages",
          "20"], work, env)  # fmt: skip
    found = _run([hrpo, "retrieval", "search", "--index", "index", "--query", first["text"][:300], "--topk",
                  "2", "--json"], work, env)  # fmt: skip
    hits = json.loads(found.splitlines()[-1])["hits"]
    assert len(hits) == 2 and hits[0]["id"] == first["id"]
