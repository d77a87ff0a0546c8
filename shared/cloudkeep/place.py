"""Where a restore writes: the region, account, project or endpoint of its target (a base module).

A :class:`Place` is what ``restore ... --into NAME`` is told besides the name: ``--region``,
``--profile``, ``--role-arn`` with ``--external-id`` (AWS: STS AssumeRole into another account),
``--project`` (Firestore), ``--endpoint`` with ``--key-env`` (Cosmos DB: another account; the key
is read from the environment variable ``--key-env`` names, never from the command line). An empty
place means the source's own region and account, as before.

Each source type says which options it takes (``SourceModel.PLACE_OPTIONS``) and applies them to
a copy of its policy spec (``SourceModel.placed``); ``cloudkeep.target`` checks residency and opens
the source there. Nothing here holds a secret: the external id and the key's variable *name* are
the most a place carries, and :meth:`Place.describe` leaves the external id out.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from urllib.parse import urlsplit

from .errors import UsageError

#: the command-line spelling of each option of a place
OPTION_NAMES = {
    "region": "--region",
    "profile": "--profile",
    "role_arn": "--role-arn",
    "external_id": "--external-id",
    "project": "--project",
    "endpoint": "--endpoint",
    "key_env": "--key-env",
}


def place_option_names(names: list[str]) -> str:
    """``--role-arn, --profile``: the command-line spelling of the options ``names``."""
    return ", ".join(OPTION_NAMES.get(name, name) for name in names)


ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/[\w+=,.@/-]{1,512}$")
REGION_RE = re.compile(r"^[a-z][a-z0-9-]{0,48}[a-z0-9]$")  # eu-west-1, westeurope, nam5
EXTERNAL_ID_RE = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
#: the hosts a plain http:// --endpoint may name (an emulator on this machine)
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
#: options whose malformed value is not repeated in the error (it may be the secret itself: the
#: key given to --key-env instead of its variable's name, an external id)
UNECHOED = frozenset({"external_id", "key_env"})
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[a-z][a-z0-9-]*$")


@dataclass(frozen=True)
class Place:
    """The target's place; every field None means "where the source is"."""

    region: str | None = None
    profile: str | None = None
    role_arn: str | None = None
    external_id: str | None = None
    project: str | None = None
    endpoint: str | None = None
    key_env: str | None = None

    def __post_init__(self) -> None:
        check_place(self)

    def given(self) -> list[str]:
        """The names of the options set, in declaration order."""
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]

    def is_here(self) -> bool:
        """No option set: the source's own region and account."""
        return not self.given()

    def account(self) -> str | None:
        """The AWS account ``role_arn`` names (None without one)."""
        match = ROLE_ARN_RE.match(self.role_arn or "")
        return match.group(1) if match else None

    def describe(self) -> dict[str, str | bool]:
        """The place for output, audit and logs: every option given, the external id only as
        ``true`` (it is not a secret, but it is not ours to print either)."""
        out: dict[str, str | bool] = {k: v for k, v in asdict(self).items() if v is not None}
        if "external_id" in out:
            out["external_id"] = True
        if self.account():
            out["account"] = str(self.account())
        return out


def check_place(place: Place) -> None:
    """Refuse a malformed place with one line naming the option (UsageError, exit 2). Checks
    the options alone: whether the source takes them is the source spec's to say."""
    for name in place.given():
        value = getattr(place, name)
        if not isinstance(value, str) or not value or value != value.strip() or any(
                ord(c) < 32 or ord(c) == 127 for c in value):
            shown = "" if name in UNECHOED else f" {value!r}"
            raise UsageError(f"bad {OPTION_NAMES[name]}{shown}: empty, surrounding spaces or "
                             "control characters")
    if place.region is not None and not REGION_RE.match(place.region):
        raise UsageError(f"bad --region {place.region!r}: not a region name (e.g. eu-west-1)")
    if place.role_arn is not None and not ROLE_ARN_RE.match(place.role_arn):
        raise UsageError(f"bad --role-arn {place.role_arn!r}: not an IAM role ARN "
                         "(arn:aws:iam::123456789012:role/NAME)")
    if place.external_id is not None:
        if place.role_arn is None:
            raise UsageError("--external-id needs --role-arn (it is passed to AssumeRole)")
        if not EXTERNAL_ID_RE.match(place.external_id):
            raise UsageError("bad --external-id: 2-1224 characters of letters, digits and +=,.@:/-")
    if place.key_env is not None and not ENV_NAME_RE.match(place.key_env):
        # never echoed: a value that is no variable name may well be the key itself
        raise UsageError("bad --key-env: the NAME of an environment variable holding the key "
                         "(letters, digits and _), never the key itself")
    if place.endpoint is not None and not re.match(r"^https?://[^\s/?#@]+(/[^\s?#@]*)?$", place.endpoint):
        raise UsageError(f"bad --endpoint {place.endpoint!r}: an https:// URL without credentials, "
                         "query or fragment")
    if place.endpoint is not None and place.endpoint.lower().startswith("http://") and (
            (urlsplit(place.endpoint).hostname or "") not in LOOPBACK_HOSTS):
        raise UsageError(f"bad --endpoint {place.endpoint!r}: plain http:// only to this machine "
                         "(an emulator); the data would cross the network unencrypted (use https://)")
    if place.project is not None and not PROJECT_RE.match(place.project):
        raise UsageError(f"bad --project {place.project!r}: not a Google Cloud project id")
