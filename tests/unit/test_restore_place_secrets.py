"""Adversarial checks of a restore's place (issue #23 §2): a secret typed where its *name* or an
id belongs is refused without being repeated — in the one-line error of the CLI and of the core."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloudkeep.errors import UsageError
from cloudkeep.place import Place
from helpers import cli

ROLE = "arn:aws:iam::111111111111:role/cloudkeep-restore"
#: what an operator pastes by mistake: the Cosmos DB key itself instead of its variable's name
COSMOS_KEY = "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=="
EXTERNAL_ID = "ext-7f3a9c21-anywhere"


def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "version: 1\n"
        f"stores:\n  vault: {{type: file, path: '{tmp_path / 'store'}'}}\n"
        "tiers:\n  t: {schedule: '0 0 * * *', rpo: 2d, retention: {last: 3}}\n"
        "datasets:\n  carts:\n"
        "    source: {type: cosmos, endpoint: 'https://acme.documents.azure.com:443/', "
        "database: shop, container: carts}\n"
        "    tier: t\n    store: vault\n")
    return path


@pytest.mark.parametrize("place", [
    dict(key_env=COSMOS_KEY),
    dict(key_env=f" {COSMOS_KEY}"),
    dict(key_env=f"{COSMOS_KEY}\n"),
    dict(role_arn=ROLE, external_id=f"{EXTERNAL_ID} "),
    dict(role_arn=ROLE, external_id=f"{EXTERNAL_ID}\x07"),
])
def test_a_malformed_secret_option_is_refused_without_repeating_it(place: dict[str, str]) -> None:
    with pytest.raises(UsageError) as caught:
        Place(**place)
    secret = (place.get("key_env") or place["external_id"]).strip()
    assert secret not in str(caught.value)
    assert "--key-env" in str(caught.value) or "--external-id" in str(caught.value)


@pytest.mark.parametrize("args", [
    ["--key-env", COSMOS_KEY],
    ["--key-env", f"{COSMOS_KEY} "],
    ["--role-arn", ROLE, "--external-id", f" {EXTERNAL_ID}"],
    ["--role-arn", ROLE, "--external-id", f"{EXTERNAL_ID}\t"],
])
def test_cli_refuses_a_malformed_secret_option_in_one_line_without_it(
        tmp_path: Path, capsys: Any, args: list[str]) -> None:
    code, out, err = cli(capsys, "--policy", str(policy(tmp_path)), "restore", "carts@latest",
                         "--into", "carts2", *args)
    assert code == 2
    assert COSMOS_KEY not in out + err and EXTERNAL_ID not in out + err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize("endpoint", ["http://acme-dr.documents.azure.com:443/",
                                      "http://10.0.0.7:8081/"])
def test_a_plain_http_endpoint_elsewhere_is_refused(endpoint: str) -> None:
    with pytest.raises(UsageError, match=r"bad --endpoint .*plain http:// only to this machine"):
        Place(endpoint=endpoint)


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8081/", "http://localhost:8081",
                                      "https://acme-dr.documents.azure.com:443/"])
def test_an_emulator_on_this_machine_or_https_is_accepted(endpoint: str) -> None:
    assert Place(endpoint=endpoint).endpoint == endpoint
