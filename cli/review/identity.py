"""Who saves a correction: the OS user (or ``--reviewer``) locally, the IAM principal on AWS.

On a deployed stack the name comes from ``sts:GetCallerIdentity`` (no permission needed), so a
label always names the credentials that wrote it; ``--reviewer`` is refused there.
"""

from __future__ import annotations

import getpass

from cli.stack import StackResources
from common.errors import UsageError


def os_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER/LOGNAME and no passwd entry (some containers)
        return "reviewer"


def reviewer_for(resources: StackResources, requested: str | None) -> str:
    if resources.endpoint_url:  # the local stack: anyone at this keyboard
        name = (requested if requested is not None else os_user()).strip()
        if not name:
            raise UsageError("--reviewer must not be empty")
        return name
    principal = str(resources.client("sts").get_caller_identity()["Arn"])
    if requested and requested != principal:
        raise UsageError(f"on AWS the reviewer is your IAM principal ({principal}): drop --reviewer")
    return principal
