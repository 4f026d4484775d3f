"""Static checks of the Dockerfile: lint, build-context paths and the runtime contract.

No Docker engine is needed: the Dockerfile is linted with hadolint (pinned in
requirements-dev.txt) and parsed here into (instruction, arguments) pairs.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"

Instruction = tuple[str, str]


def logical_lines(text: str) -> list[str]:
    """Join backslash continuations and drop comments and blank lines.

    Like Docker, a comment line inside a continued instruction is skipped
    without ending it.
    """
    lines: list[str] = []
    pending: list[str] = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        lines.append(" ".join(part for part in pending if part))
        pending = []
    if pending:
        lines.append(" ".join(part for part in pending if part))
    return lines


def parse_instructions(text: str) -> list[Instruction]:
    """Split a Dockerfile into (UPPER-CASE KEYWORD, rest of the line) pairs."""
    instructions: list[Instruction] = []
    for line in logical_lines(text):
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Group instructions by build stage; each stage starts with its FROM."""
    result: list[list[Instruction]] = []
    for keyword, args in instructions:
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """Separate leading `--flag[=value]` options from the operands.

    Operands in exec (JSON array) form are decoded; otherwise they are split
    like a shell would split them.
    """
    flags: dict[str, str] = {}
    rest = args
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name] = value
        rest = rest.lstrip()
    if rest.startswith("["):
        return flags, [str(item) for item in json.loads(rest)]
    return flags, shlex.split(rest)


def context_sources(instructions: list[Instruction]) -> list[str]:
    """Sources of every COPY/ADD that reads the build context (no `--from=`)."""
    sources: list[str] = []
    for keyword, args in instructions:
        if keyword not in {"COPY", "ADD"}:
            continue
        flags, operands = split_flags(args)
        if "from" in flags:
            continue
        sources.extend(operands[:-1])
    return sources


def last_args(stage: list[Instruction], keyword: str) -> str | None:
    """Arguments of the last `keyword` instruction in a stage (the one that wins)."""
    found = [args for kw, args in stage if kw == keyword]
    return found[-1] if found else None


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_instructions(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    all_stages = stages(instructions)
    assert all_stages, "Dockerfile has no FROM"
    return all_stages[-1]


def test_logical_lines_join_continuations_and_skip_comments() -> None:
    text = '# header\nRUN a \\\n    && b \\\n# inside\n    && c\n\nCMD ["x"]\n'
    assert logical_lines(text) == ["RUN a && b && c", 'CMD ["x"]']


def test_split_flags_handles_shell_and_exec_forms() -> None:
    assert split_flags("--from=builder --chown=1:1 /opt/venv /opt/venv") == (
        {"from": "builder", "chown": "1:1"},
        ["/opt/venv", "/opt/venv"],
    )
    assert split_flags('["a b", "c/"]') == ({}, ["a b", "c/"])


def test_hadolint_passes() -> None:
    assert HADOLINT.exists(), f"{HADOLINT} is missing: run `make install`"
    # Run from the repo root so a .hadolint.yaml there would be honoured;
    # threshold "style" makes every finding, however minor, a failure.
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_copy_sources_exist_in_repo(instructions: list[Instruction]) -> None:
    sources = context_sources(instructions)
    assert sources, "no COPY/ADD from the build context found"
    problems: list[str] = []
    for source in sources:
        if any(char in source for char in "*?["):
            if not any(ROOT.glob(source.rstrip("/"))):
                problems.append(f"{source}: matches nothing")
            continue
        path = ROOT / source
        if not path.exists():
            problems.append(f"{source}: missing")
        elif path.is_dir() and not any(child.is_file() for child in path.rglob("*")):
            # git does not track empty directories, so a fresh clone (CI, the
            # docker build context) would not have it: add a .gitkeep.
            problems.append(f"{source}: empty directory (git will not keep it; add a .gitkeep)")
    assert not problems, "COPY/ADD sources not in the repo:\n" + "\n".join(problems)


def test_final_stage_runs_as_non_root(final_stage: list[Instruction]) -> None:
    user = last_args(final_stage, "USER")
    assert user is not None, "final stage has no USER: it would run as root"
    name = user.split(":", 1)[0]
    assert name not in {"root", "0"}, f"final stage runs as {user!r}"


def test_final_stage_healthcheck_hits_healthz(final_stage: list[Instruction]) -> None:
    healthcheck = last_args(final_stage, "HEALTHCHECK")
    assert healthcheck is not None, "final stage has no HEALTHCHECK"
    assert healthcheck.upper() != "NONE"
    assert "/healthz" in healthcheck


def test_final_stage_stops_with_sigterm(final_stage: list[Instruction]) -> None:
    assert last_args(final_stage, "STOPSIGNAL") == "SIGTERM"


def test_final_stage_cmd_is_exec_form_run_py(final_stage: list[Instruction]) -> None:
    cmd = last_args(final_stage, "CMD")
    assert cmd is not None, "final stage has no CMD"
    # Exec form: python is PID 1 and receives SIGTERM itself (no /bin/sh -c).
    assert cmd.startswith("["), f"CMD is not exec form: {cmd}"
    assert json.loads(cmd) == ["python", "run.py"]
