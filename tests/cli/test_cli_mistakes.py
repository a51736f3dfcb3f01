"""Each command-line mistake a new user made: one line on stderr, the exit code of the one rule
(common/errors.py's EXIT_RULE), and a hint that names the option or command it means."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import Run, stack_state
from processes import python_env

from cli.commands import count as count_command
from cli.main import build_parser
from common.errors import EXIT_BROKEN_PIPE, EXIT_REFUSED, EXIT_RULE, EXIT_USAGE, UsageError, did_you_mean
from common.stack_state import write_state


@pytest.fixture
def files(tmp_path: Path, bin_jpeg: bytes) -> Path:
    (tmp_path / "labels.csv").write_text("image,count\nshelf.jpg,3\n")
    (tmp_path / "shelf.jpg").write_bytes(bin_jpeg)
    return tmp_path


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that loads the model fails the test: the mistake must be found before."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(count_command, "InProcessCounter", refuse)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["upload", "{dir}/gone.jpg", "--bin", "B1"], "DIR_OR_PHOTO {dir}/gone.jpg: no such file or folder"),
        (["upload", "{dir}/labels.csv", "--bin", "B1"], "DIR_OR_PHOTO {dir}/labels.csv: not a JPEG or PNG"),
        (["count", "{dir}/gone.jpg"], "PHOTO {dir}/gone.jpg: no such file or folder"),
        (["count", "{dir}/labels.csv"], "PHOTO {dir}/labels.csv: not a JPEG or PNG photo"),
        (["count", "{dir}/shelf.jpg", "{dir}/labels.csv"], "PHOTO {dir}/labels.csv: not a JPEG or PNG"),
        (["bins", "--stack", "locl"], "--stack locl: no such stack; did you mean --stack local"),
        (["history", "BIN-1", "--stack", "Local"], "did you mean --stack local"),
        (["upload", "{dir}/shelf.jpg", "--expected", "{dir}/gone.csv"], "--expected"),
        (["count", "{dir}/shelf.jpg", "--threads", "0"], "--threads 0: give a whole number of at least 1"),
        (["count", "{dir}/shelf.jpg", "--endpoint", "locl"], "did you mean --endpoint local?"),
    ],
)
def test_a_mistake_is_one_usage_line_naming_the_option_before_anything_runs(
    run: Run, files: Path, no_model_load: None, argv: list[str], says: str
) -> None:
    result = run(*(arg.format(dir=files) for arg in argv))
    assert result.code == EXIT_USAGE and result.out == ""
    assert result.err.count("\n") == 1 and says.format(dir=files) in result.err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["histroy", "BIN-1"], "invalid choice: 'histroy' (choose from"),
        (["histroy", "BIN-1"], "did you mean `bincount history`?"),
        (["bins", "--sort", "conf"], "did you mean --sort confidence?"),
        (["bins", "--needs-reveiw"], "did you mean --needs-review?"),
        (["bins", "--reviewed", "maybe"], "--reviewed: invalid choice: 'maybe'"),
        (["redrive", "ingets"], "did you mean `bincount redrive ingest`?"),
        (["history", "BIN-1", "--jsn"], "did you mean --json?"),
    ],
)
def test_argparse_mistakes_are_one_line_with_the_closest_choice(
    run: Run, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(*argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == EXIT_USAGE and err.count("\n") == 1 and says in err


def test_a_deployed_stack_name_without_a_region_says_how_to_give_one(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    result = run("bins", "--stack", "bincount-prod")
    assert result.code == EXIT_USAGE and "--region" in result.err and "--stack local" in result.err


def test_hints_prefer_the_one_choice_a_value_begins_then_the_closest() -> None:
    assert did_you_mean("conf", ["count", "confidence"], "--sort {}") == "; did you mean --sort confidence?"
    assert did_you_mean("locl", ["local"], "--stack {}") == "; did you mean --stack local?"
    assert did_you_mean("zzz", ["local"]) == ""


def test_the_exit_rule_is_in_the_help_and_the_codes_are_what_it_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert " ".join(EXIT_RULE.split()) in help_text
    assert (EXIT_REFUSED, EXIT_USAGE) == (1, 2) and "1 refused" in EXIT_RULE and "2 usage" in EXIT_RULE


def local_state(path: Path, artifact: Path) -> None:
    write_state(path, stack_state(log_dir=str(path.parent), model_artifact=str(artifact)))


def test_count_uses_the_model_the_local_stack_serves_else_the_packed_one(
    no_local_stack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packed = [tmp_path / "model.tar.gz", tmp_path / "model-local.tar.gz"]
    monkeypatch.setattr(count_command, "PACKED_MODELS", tuple(packed))
    with pytest.raises(UsageError, match="run `make model`"):
        count_command.default_model()
    packed[1].write_bytes(b"make demo's")  # `make demo` packs only the local artifact
    assert count_command.default_model() == packed[1]
    served = tmp_path / "served.tar.gz"
    served.write_bytes(b"the stack's")
    local_state(no_local_stack, served)
    assert count_command.default_model() == served


def test_a_reader_that_stops_early_ends_the_command_quietly() -> None:
    """`bincount bins | head`: no traceback when the pipe closes, the shell's SIGPIPE status."""
    script = (
        "from common.errors import one_line_errors\n"
        "@one_line_errors('bincount')\n"
        "def main() -> int:\n"
        "    for n in range(200_000):\n"
        "        print('bin', n)\n"
        "    return 0\n"
        "raise SystemExit(main())\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=python_env()
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.read(100)
    process.stdout.close()
    err = process.stderr.read()
    assert process.wait(timeout=60) == EXIT_BROKEN_PIPE and err == b""
