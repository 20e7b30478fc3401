"""Every command block of the README runs (issue #9, item 8).

- ``python`` blocks are benchmark files: they run as a test suite and pass.
- ``yaml`` blocks that are recipes validate (``hwbench recipes validate``).
- shell blocks run command by command, as a shell would split them (``&&``, ``;``, comments, ``VAR=value``
  prefixes, redirections). A ``pytest`` command runs with ``--collect-only`` (it would otherwise run the
  whole suite this test belongs to; the shipped-recipes test runs the benchmarks for real), except in the
  block whose ``hwbench report/rerun/compare/export latest`` commands need its run; ``hwbench compare`` may
  exit 1 or 3 there (the block shows its exit code). Each ``pip install -e`` names only extras that
  ``pyproject.toml`` declares (installing here would repoint the shared install). The team-setup block
  names a placeholder server (``mlflow.lab``); ``tests/test_team_server.py`` runs those commands against a
  real one.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
BLOCKS = [(m.group(1) or "", m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", README, re.S | re.M)]
SHELL = [body for lang, body in BLOCKS if lang in ("", "bash", "sh", "console")
         and re.match(r"\s*(python3? -m |pytest |hwbench )", body) and "mlflow.lab" not in body]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _commands(body: str) -> list[tuple[dict[str, str], list[str]]]:
    """(environment additions, argv) per command; ``echo`` and redirections are dropped."""
    out = []
    for line in body.strip().splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        redirect = False
        for token in [*lexer, ";"]:
            if token in (";", "&&"):
                env = {}
                while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                    key, _, value = words.pop(0).partition("=")
                    env[key] = value
                if words and words[0] != "echo":
                    out.append((env, words))
                words, redirect = [], False
            elif token in (">", "2>", ">>"):
                redirect = True  # the target word that follows is dropped too
            elif redirect:
                redirect = False
            else:
                words.append(token)
    return out


def test_the_readme_has_command_blocks() -> None:
    assert SHELL and any(lang == "python" for lang, _ in BLOCKS) and any(lang == "yaml" for lang, _ in BLOCKS)


@pytest.mark.parametrize("body", SHELL, ids=lambda b: b.strip().splitlines()[0][:60])
def test_shell_blocks(body: str) -> None:
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    for env, argv in _commands(body):
        if "pip" in argv and "install" in argv:
            spec = argv[-1]
            wanted = set(re.findall(r"\[([^\]]*)\]", spec)[0].split(",")) if "[" in spec else set()
            assert wanted <= extras, f"{spec}: unknown extras {wanted - extras}"
            continue
        allowed = {0}
        if "pytest" in argv:
            argv = [sys.executable, *argv[argv.index("-m"):]] if "-m" in argv else [sys.executable, "-m", *argv]
            if "latest" not in body:  # only the report block needs a run: the others collect
                argv += ["--collect-only", "-q"]
            argv += ["-p", "no:cacheprovider"]
        elif argv[0] == "hwbench":
            allowed = {0, 1, 3} if argv[1:2] == ["compare"] else allowed
            argv = [sys.executable, "-m", "pytest_hwbench.cli", *argv[1:]]
        done = subprocess.run(argv, cwd=REPO, env={**ENV, **env}, capture_output=True, text=True, timeout=900,
                              check=False)
        assert done.returncode in allowed, f"{' '.join(argv)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.mark.parametrize("index", [i for i, (lang, _) in enumerate(BLOCKS) if lang == "python"])
def test_python_blocks_pass_as_benchmarks(index: int, tmp_path: Path) -> None:
    (tmp_path / "test_readme_example.py").write_text(BLOCKS[index][1])
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-hwbench-mlflow",
                           str(tmp_path)], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.parametrize("index", [i for i, (lang, body) in enumerate(BLOCKS)
                                   if lang == "yaml" and body.lstrip().startswith("version:")])
def test_yaml_recipe_blocks_validate(index: int, tmp_path: Path) -> None:
    path = tmp_path / "readme.yaml"
    path.write_text(BLOCKS[index][1])
    done = subprocess.run([sys.executable, "-m", "pytest_hwbench.cli", "recipes", "validate", str(path)],
                          env=ENV, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
