"""Fixtures of the `bincount` tests: fake credentials, template.yaml in moto, and a CLI runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from cli_support import REGION, STACK, Result, Run
from moto_baseline import ModuleAccount
from processes import REPO

from cli.main import main
from cli.stack import StackResources, resolve_stack
from local.emulator.stack import LOCAL_PARAMETER_VALUES


@pytest.fixture
def no_local_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the CLI at a state file that does not exist: no local stack is up."""
    path = tmp_path / "state.json"
    monkeypatch.setenv("BINCOUNT_LOCAL_STATE", str(path))
    return path


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], no_local_stack: Path) -> Run:
    """``bincount ARGS...`` in this process: exit code, stdout, stderr."""

    def invoke(*argv: str) -> Result:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


def create_cli_stack() -> None:
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=STACK,
        TemplateBody=(REPO / "template.yaml").read_text(),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in LOCAL_PARAMETER_VALUES.items()],
    )


@pytest.fixture(scope="module")
def shared_account() -> Iterator[ModuleAccount[None]]:
    """template.yaml's stack in one moto account per test module: creating it costs more than most
    CLI tests; each test starts from the baseline (tests/moto_baseline.py)."""
    account = ModuleAccount(create_cli_stack)
    yield account
    account.close()


@pytest.fixture
def deployed(no_local_stack: Path, shared_account: ModuleAccount[None]) -> StackResources:
    """template.yaml created in moto's CloudFormation, reached as a deployed stack would be."""
    shared_account.fresh()
    return resolve_stack(STACK, REGION)


@pytest.fixture
def on_stack(run: Run, deployed: StackResources) -> Run:
    """``bincount ARGS... --stack <the moto stack> --region us-east-1``."""

    def invoke(*argv: str) -> Result:
        return run(*argv, "--stack", STACK, "--region", REGION)

    return invoke


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """moto's CloudFormation warns about every resource type it skips (see ENGINEERING.md)."""
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning"))
