"""A local model registry: one JSON entry per model version, and a pointer to the version served.

``python -m training.promotion.registry list | register ARTIFACT | promote VERSION | rollback | served``

Layout (default ``build/registry/``, ``--registry DIR``)::

    versions/<version>.json          the entry: version, sha256, artifact, metrics, gate, status ...
    artifacts/<version>/model.tar.gz a copy of the artifact (the registry outlives build/train)
    served.json                      {"version": ..., "history": [every version served, in order]}

Statuses: ``candidate`` (registered, not judged), ``approved`` (the gate or a person said yes),
``rejected`` (the gate said no), ``archived`` (was served, replaced or rolled back; can be
promoted again). Only an approved or archived version can be promoted; ``rollback`` serves the
version served before the current one again, in one command.

On AWS the same fields live in the SageMaker Model Registry: the registry is a *model package
group*, each version a *model package* (``CreateModelPackage``, request built by
:func:`create_model_package_request`) whose ``ModelApprovalStatus`` is ``Approved`` (approved,
archived), ``Rejected`` or ``PendingManualApproval`` (candidate); version, sha256 and the gate's
figures ride in ``CustomerMetadataProperties``. What the pipeline serves is the template's
``ModelDataUrl`` parameter (``sam deploy --parameter-overrides ModelDataUrl=...``); a promotion
updates it, and the transform jobs already running keep the model they were created with, so no
job in flight is lost. Locally, :func:`served_artifact` is what the local stack's model server
loads (re-read on reload).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common.errors import NotFound, Refused, UsageError, one_line_errors
from common.files import sha256_file, write_atomically

PROG = "python -m training.promotion.registry"
DEFAULT_REGISTRY = Path("build/registry")
STATUSES = ("candidate", "approved", "rejected", "archived")
PROMOTABLE = ("approved", "archived")
#: Local status -> SageMaker ModelApprovalStatus.
APPROVAL_STATUS = {
    "candidate": "PendingManualApproval",
    "approved": "Approved",
    "archived": "Approved",
    "rejected": "Rejected",
}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomically(path, json.dumps(data, indent=1) + "\n")  # a reader never sees half an entry


def artifact_config(artifact: Path) -> dict[str, Any]:
    """``config.json`` of a ``model.tar.gz`` (or a model folder): version, weights hash, metrics."""
    if artifact.is_dir():
        return dict(json.loads((artifact / "config.json").read_text(encoding="utf-8")))
    try:
        with tarfile.open(artifact, "r:gz") as tar:
            member = tar.extractfile("config.json")
            if member is None:
                raise KeyError("config.json")
            return dict(json.loads(member.read()))
    except (tarfile.TarError, KeyError, OSError, ValueError) as exc:
        raise UsageError(f"{artifact}: not a model artifact ({exc})") from exc


# --- entries --------------------------------------------------------------------------------------
def entry_path(registry: Path, version: str) -> Path:
    return registry / "versions" / f"{version}.json"


def load_entry(registry: Path, version: str) -> dict[str, Any]:
    path = entry_path(registry, version)
    if not path.is_file():
        raise NotFound(f"version {version} is not in the registry {registry}")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def save_entry(registry: Path, entry: dict[str, Any]) -> None:
    _write_json(entry_path(registry, entry["version"]), entry)


def entries(registry: Path) -> list[dict[str, Any]]:
    """Every entry, oldest registration first."""
    found = [json.loads(p.read_text(encoding="utf-8")) for p in (registry / "versions").glob("*.json")]
    return sorted(found, key=lambda e: (e["registered"], e["version"]))


def register(
    registry: Path, artifact: Path, status: str = "candidate", approved_by: str | None = None
) -> dict[str, Any]:
    """Copy the artifact into the registry and write its entry (again: the same version is updated)."""
    if status not in STATUSES:
        raise UsageError(f"status must be one of {', '.join(STATUSES)}")
    if not artifact.exists():
        raise NotFound(f"{artifact}: no such model artifact")
    config = artifact_config(artifact)
    version = str(config.get("version") or "")
    if not version:
        raise UsageError(f"{artifact}: its config.json names no version")
    stored = registry / "artifacts" / version / "model.tar.gz"
    if artifact.is_dir():
        raise UsageError(f"{artifact}: register a model.tar.gz, not a folder")
    if artifact.resolve() != stored.resolve():
        stored.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact, stored)
    training = config.get("training") or {}
    previous = load_entry(registry, version) if entry_path(registry, version).is_file() else {}
    entry = {
        "version": version,
        "sha256": sha256_file(stored),
        "weights_sha256": config.get("weights_sha256"),
        "artifact": str(stored),
        "source": str(artifact),
        "parent": (training.get("init_from") or {}).get("version"),
        "metrics": training.get("metrics"),
        "gate": previous.get("gate"),
        "status": status,
        "approved_by": approved_by if status == "approved" else previous.get("approved_by"),
        "registered": previous.get("registered", _now()),
        "updated": _now(),
    }
    save_entry(registry, entry)
    return entry


def record_gate(registry: Path, artifact: Path, verdict: dict[str, Any], approved_by: str) -> dict[str, Any]:
    """Register a gated candidate: approved (by ``approved_by``) if the gate promotes, else rejected."""
    promoted = bool(verdict.get("promoted"))
    entry = register(
        registry, artifact, "approved" if promoted else "rejected", approved_by if promoted else None
    )
    entry["gate"] = verdict
    save_entry(registry, entry)
    return entry


# --- what is served -------------------------------------------------------------------------------
def _served_state(registry: Path) -> dict[str, Any]:
    path = registry / "served.json"
    if not path.is_file():
        return {"version": None, "history": []}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def served_version(registry: Path = DEFAULT_REGISTRY) -> str | None:
    return _served_state(registry).get("version")


def served_artifact(registry: Path = DEFAULT_REGISTRY) -> Path | None:
    """The ``model.tar.gz`` the pipeline should serve now, or None when nothing is promoted yet.

    This is what a model server reloads after a promotion or a rollback.
    """
    version = served_version(registry)
    if version is None:
        return None
    return Path(load_entry(registry, version)["artifact"])


def _serve(registry: Path, version: str, history: list[str], action: str, approved_by: str | None) -> None:
    state = _served_state(registry)
    previous = state.get("version")
    if previous and previous != version:
        old = load_entry(registry, previous)
        old["status"], old["updated"] = "archived", _now()
        save_entry(registry, old)
    entry = load_entry(registry, version)
    entry.update(status="approved", served_since=_now(), updated=_now())
    if approved_by:
        entry["approved_by"] = approved_by
    save_entry(registry, entry)
    log = [
        *state.get("log", []),
        {"action": action, "version": version, "previous": previous, "when": _now()},
    ]
    _write_json(registry / "served.json", {"version": version, "history": history, "log": log})


def promote(registry: Path, version: str, approved_by: str | None = None) -> dict[str, Any]:
    """Serve ``version``; it must be approved (by the gate or a person) or archived."""
    entry = load_entry(registry, version)
    if entry["status"] not in PROMOTABLE:
        why = "; ".join((entry.get("gate") or {}).get("reasons", [])) or "not approved"
        raise Refused(f"version {version} is {entry['status']} ({why}); only approved versions are promoted")
    state = _served_state(registry)
    if state.get("version") == version:
        return entry
    _serve(registry, version, [*state.get("history", []), version], "promote", approved_by)
    return load_entry(registry, version)


def rollback(registry: Path) -> dict[str, Any]:
    """Serve again the version served before the current one."""
    state = _served_state(registry)
    history = list(state.get("history", []))
    if len(history) < 2:
        raise Refused("nothing to roll back to: fewer than two versions have been served")
    history.pop()
    _serve(registry, history[-1], history, "rollback", None)
    return load_entry(registry, history[-1])


# --- SageMaker Model Registry (dry run) ----------------------------------------------------------
def create_model_package_request(
    entry: dict[str, Any], group: str, image_uri: str, model_data_url: str
) -> dict[str, Any]:
    """The ``CreateModelPackage`` request that puts this entry into a model package group."""
    gate = entry.get("gate") or {}
    gate_set = gate.get("gate_set") or {}
    diff = gate_set.get("difference") or {}
    metadata = {
        "version": entry["version"],
        "sha256": entry["sha256"],
        "weights_sha256": str(entry.get("weights_sha256") or ""),
        "parent": str(entry.get("parent") or ""),
        "gate_verdict": str(gate.get("verdict") or "none"),
        "gate_accuracy_diff": f"{diff['accuracy']:.4f}" if "accuracy" in diff else "",
        "gate_mcnemar_p": f"{gate_set['mcnemar']['p']:.4f}" if "mcnemar" in gate_set else "",
        "approved_by": str(entry.get("approved_by") or ""),
    }
    return {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": f"Bin Count {entry['version']} ({entry['status']})",
        "InferenceSpecification": {
            "Containers": [
                {
                    "Image": image_uri,
                    "ModelDataUrl": model_data_url,
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                }
            ],
            "SupportedContentTypes": ["image/jpeg", "image/png"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
        "ModelApprovalStatus": APPROVAL_STATUS[entry["status"]],
        "CustomerMetadataProperties": {k: v[:256] for k, v in metadata.items() if v},
    }


def update_approval_request(model_package_arn: str, status: str) -> dict[str, Any]:
    """The ``UpdateModelPackage`` request a promotion (or a rejection) sends for a registered version."""
    return {"ModelPackageArn": model_package_arn, "ModelApprovalStatus": APPROVAL_STATUS[status]}


# --- command line --------------------------------------------------------------------------------
def render_list(registry: Path) -> str:
    served = served_version(registry)
    rows = [f"{'':2}{'version':45} {'status':9} {'gate':8} {'approved_by':16} registered"]
    for entry in entries(registry):
        mark = "* " if entry["version"] == served else "  "
        verdict = (entry.get("gate") or {}).get("verdict", "-")
        rows.append(
            f"{mark}{entry['version']:45} {entry['status']:9} {verdict:8} "
            f"{entry.get('approved_by') or '-'!s:16} {entry['registered']}"
        )
    if len(rows) == 1:
        return f"registry {registry} is empty"
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--registry", type=Path, default=DEFAULT_REGISTRY)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="every version, * = served")
    sub.add_parser("served", help="print the served artifact's path")
    reg = sub.add_parser("register", help="add a model.tar.gz (a baseline: --status approved)")
    reg.add_argument("artifact", type=Path)
    reg.add_argument("--status", choices=STATUSES, default="candidate")
    reg.add_argument("--approved-by", default=None)
    pro = sub.add_parser("promote", help="serve an approved version")
    pro.add_argument("version")
    pro.add_argument("--approved-by", default=None)
    sub.add_parser("rollback", help="serve the previously served version again")
    aws = sub.add_parser("aws-request", help="print the CreateModelPackage request (dry run)")
    aws.add_argument("version")
    aws.add_argument("--group", default="bincount")
    aws.add_argument("--image-uri", required=True)
    aws.add_argument("--model-data-url", required=True)
    return p


@one_line_errors(PROG)
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    registry: Path = args.registry
    if args.command == "list":
        print(render_list(registry))
    elif args.command == "served":
        artifact = served_artifact(registry)
        if artifact is None:
            raise NotFound(f"registry {registry} serves no version yet")
        print(artifact)
    elif args.command == "register":
        if args.status == "approved" and not args.approved_by:
            raise UsageError("--status approved needs --approved-by NAME")
        entry = register(registry, args.artifact, args.status, args.approved_by)
        print(f"registered {entry['version']} ({entry['status']})")
    elif args.command == "promote":
        entry = promote(registry, args.version, args.approved_by)
        print(f"serving {entry['version']}: {entry['artifact']}")
    elif args.command == "rollback":
        entry = rollback(registry)
        print(f"rolled back: serving {entry['version']}: {entry['artifact']}")
    else:
        entry = load_entry(registry, args.version)
        print(
            json.dumps(
                create_model_package_request(entry, args.group, args.image_uri, args.model_data_url), indent=1
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
