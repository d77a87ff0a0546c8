"""Bad arguments (issue #17.12): every command's path and name options are checked before the
command does anything — one line ``error: bad OPTION 'value': why``, exit 2, no traceback.

One validator per kind of value (``cloudkeep.cliargs``): names and texts, files to write, files
to read, and restore targets (then each source's own naming rules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cloudkeep.engine import backup
from cloudkeep.function import invoke as handle
from cloudkeep.manifest import Manifest
from cloudkeep.policy import parse_policy
from cloudkeep.registry import open_source
from cloudkeep.stores.file import FileStore
from helpers import cli
from test_engine import ScriptedSource

POLICY = """\
version: 1
stores: {vault: {type: file, path: ./vault}}
tiers: {t: {schedule: "0 2 * * *", rpo: 26h, retention: {daily: 7}}}
datasets:
  orders: {source: {type: dynamodb, table: orders, region: us-east-1}, tier: t, store: vault}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cloudkeep.yaml").write_text(POLICY)
    policy = parse_policy(POLICY, base_dir=tmp_path)
    backup(policy, "orders", store=FileStore(tmp_path / "vault"), source=ScriptedSource())
    return tmp_path


def refused(capsys: Any, *args: str) -> str:
    """Run the CLI; assert exit 2 with exactly one line on stderr and nothing on stdout."""
    code, out, err = cli(capsys, *args)
    assert code == 2, (code, out, err)
    assert out == "" and "Traceback" not in err and "unexpected" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    return err.strip()


CASES: dict[str, tuple[list[str], str]] = {
    "policy-empty": (["--policy", "", "validate"], "error: bad --policy '': it is empty"),
    "policy-blank": (["--policy", "  ", "list"], "error: bad --policy '  ': it is blank"),
    "policy-empty-after-command": (["list", "--policy", ""], "error: bad --policy '': it is empty"),
    "init-missing-folder": (["init", "--output", "missing/dir/x.yaml"],
                            "error: bad --output 'missing/dir/x.yaml': folder missing/dir does not exist"),
    "init-empty": (["init", "--output", ""], "error: bad --output '': it is empty"),
    "init-folder": (["init", "--output", "."], "error: bad --output '.': it is a folder; name a file in it"),
    "report-missing-folder": (["report", "--output", "missing/dir/r.html"],
                              "error: bad --output 'missing/dir/r.html': folder missing/dir does not exist"),
    "report-empty": (["report", "-o", ""], "error: bad --output '': it is empty"),
    "report-folder": (["report", "--output", "vault"], "error: bad --output 'vault': it is a folder; name a file in it"),
    "report-under-a-file": (["report", "--output", "cloudkeep.yaml/r.html"],
                            "error: bad --output 'cloudkeep.yaml/r.html': cloudkeep.yaml is not a folder"),
    "keys-missing-folder": (["keys", "create", "--path", "nope/k.key"],
                            "error: bad --path 'nope/k.key': folder nope does not exist"),
    "keys-empty": (["keys", "create", "--path", ""], "error: bad --path '': it is empty"),
    "list-empty-dataset": (["list", ""], "error: bad DATASET '': it is empty"),
    "list-spaced-dataset": (["list", " orders"], "error: bad DATASET ' orders': it starts or ends with spaces"),
    "list-empty-store": (["list", "--store", ""], "error: bad --store '': it is empty"),
    "show-empty-ref": (["show", ""], "error: bad REF '': it is empty"),
    "verify-empty-latest": (["verify", "--latest", ""], "error: bad --latest '': it is empty"),
    "restore-empty-ref": (["restore", "", "--into", "x"], "error: bad REF '': it is empty"),
    "restore-spaced-into": (["restore", "orders@latest", "--into", " orders2"],
                            "error: bad --into ' orders2': it starts or ends with spaces"),
    "restore-control-into": (["restore", "orders@latest", "--into", "a\tb"],
                             "error: bad --into 'a\\tb': it holds control characters"),
    "hold-empty-reason": (["hold", "add", "orders@latest", "--reason", ""], "error: bad --reason '': it is empty"),
    "hold-list-empty": (["hold", "list", ""], "error: bad DATASET '': it is empty"),
    "audit-empty-dataset": (["audit", "--dataset", ""], "error: bad --dataset '': it is empty"),
    "audit-empty-since": (["audit", "--since", " "], "error: bad --since ' ': it is blank"),
    "run-empty-dataset": (["run", ""], "error: bad DATASETS '': it is empty"),
    "run-empty-now": (["run", "--due", "--now", ""], "error: bad --now '': it is empty"),
    "run-empty-queue": (["run", "--queue", ""], "error: bad --queue '': it is empty"),
    "run-empty-budget": (["run", "--budget", ""], "error: bad --budget '': it is empty"),
    "run-empty-part-size": (["run", "--part-size", ""], "error: bad --part-size '': it is empty"),
    "plan-empty-now": (["plan", "--now", ""], "error: bad --now '': it is empty"),
    "prune-empty-now": (["prune", "--now", ""], "error: bad --now '': it is empty"),
    "prune-empty-dataset": (["prune", "orders", ""], "error: bad DATASETS '': it is empty"),
    "work-empty-queue": (["work", "--queue", ""], "error: bad --queue '': it is empty"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_arguments_are_one_line_and_exit_2(workdir: Path, capsys: Any, case: tuple[list[str], str]) -> None:
    args, expected = case
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    assert refused(capsys, *args) == expected
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before  # nothing written


def test_restore_into_an_empty_or_invalid_table_name(workdir: Path, capsys: Any) -> None:
    for target in ("", "ab", "bad name!", "x" * 256):
        err = refused(capsys, "restore", "orders@latest", "--into", target)
        assert err == (f"error: bad --into {target!r}: a DynamoDB table name has 3 to 255 letters, "
                       "digits, '_', '.' or '-'")


def test_the_function_refuses_a_bad_target_with_400(workdir: Path) -> None:
    policy = parse_policy(POLICY, base_dir=workdir)
    status, body = handle(policy, {"action": "restore", "ref": "orders@latest", "into": ""})
    assert status == 400 and body == {"ok": False, "error": "bad --into '': a DynamoDB table name has "
                                      "3 to 255 letters, digits, '_', '.' or '-'"}


def test_good_output_paths_still_work(workdir: Path, capsys: Any) -> None:
    (workdir / "out").mkdir()
    code, out, err = cli(capsys, "report", "--output", "out/r.html")
    assert code == 0, err
    assert (workdir / "out" / "r.html").read_text().startswith("<!doctype html") or \
        (workdir / "out" / "r.html").stat().st_size > 0
    code, out, err = cli(capsys, "init", "--output", "out/new.yaml")
    assert code == 0 and (workdir / "out" / "new.yaml").exists(), err
    code, out, err = cli(capsys, "init", "--output", "-")
    assert code == 0 and "version: 1" in out


SOURCES = """\
version: 1
stores: {v: {type: file, path: /unused}}
tiers: {t: {schedule: "0 2 * * *", rpo: 26h, retention: {daily: 7}}}
datasets:
  f: {source: {type: firestore, project: p1, collections: [users, teams]}, tier: t, store: v}
  c: {source: {type: cosmos, endpoint: "https://x.documents.azure.com", database: db, container: c}, tier: t, store: v}
  s: {source: {type: s3, bucket: src-bucket, region: us-east-1}, tier: t, store: v}
  r: {source: {type: rds, instance: db-1, region: us-east-1}, tier: t, store: v}
"""


@pytest.mark.parametrize(("dataset", "source", "good", "bad"), [
    ("f", {"type": "firestore", "collections": ["users", "teams"]}, ["", "restored_", "r-1."],
     ["a/b", "x" * 1500]),
    ("c", {"type": "cosmos"}, ["carts_restored", "a b"], ["", "a/b", "a#b", "x" * 256]),
    ("s", {"type": "s3"}, ["acme-restored", "acme-restored/some/prefix"], ["", "Bad_Bucket", "ab", "a..b/x"]),
    ("r", {"type": "rds"}, ["shop-db-restored", "a"], ["", "1db", "db--x", "db-", "x" * 64, "db_x"]),
], ids=["firestore", "cosmos", "s3", "rds"])
def test_each_source_names_its_targets(workdir: Path, dataset: str, source: dict[str, Any],
                                       good: list[str], bad: list[str]) -> None:
    from cloudkeep.catalog import resolve
    from cloudkeep.errors import UsageError
    from cloudkeep.sources import check_restore_target

    _, manifest = resolve(parse_policy(POLICY, base_dir=workdir), "orders@latest")
    theirs = Manifest.model_validate(json_of(manifest) | {"dataset": dataset, "source": source})
    spec = parse_policy(SOURCES).datasets[dataset].source
    src = open_source(spec)
    for target in good:
        check_restore_target(src, theirs, target)
    for target in bad:
        with pytest.raises(UsageError, match=r"^bad --into "):
            check_restore_target(src, theirs, target)


def test_a_firestore_export_restores_into_a_database(workdir: Path) -> None:
    from cloudkeep.catalog import resolve
    from cloudkeep.errors import UsageError
    from cloudkeep.sources import check_restore_target

    _, manifest = resolve(parse_policy(POLICY, base_dir=workdir), "orders@latest")
    export = Manifest.model_validate(json_of(manifest) | {
        "source": {"type": "firestore", "collections": ["users"]}, "method": "export",
        "native": {"kind": "firestore-export", "output_uri_prefix": "gs://b/x"}})
    src = open_source(parse_policy(SOURCES).datasets["f"].source)
    for target in ("(default)", "restored-db"):
        check_restore_target(src, export, target)
    for target in ("", "restored_", "Restored", "db"):
        with pytest.raises(UsageError, match="restores into a database"):
            check_restore_target(src, export, target)


def json_of(manifest: Manifest) -> dict[str, Any]:
    import json

    data: dict[str, Any] = json.loads(manifest.to_bytes())
    return data
