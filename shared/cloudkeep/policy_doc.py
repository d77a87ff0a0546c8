"""The policy's JSON Schema and its reference page, both generated from the policy models
(``cloudkeep.policy`` and the adapters' specs it assembles through ``cloudkeep.registry``).

``schemas/policy.schema.json`` (editors validate ``cloudkeep.yaml`` against it as it is typed) and
``docs/policy-reference.md`` are written by ``make schema``; tests keep both current::

    python -m cloudkeep.policy_doc schema    > schemas/policy.schema.json
    python -m cloudkeep.policy_doc reference > docs/policy-reference.md
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from .layout import DATASET_NAME_RE
from .policy import (
    MAX_DURATION,
    MAX_POLICY_BYTES,
    MAX_YAML_ALIASES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    Policy,
)

SCHEMA_ID = "https://cloudkeep.dev/schemas/policy.schema.json"


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a policy file, in validation mode."""
    schema = Policy.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = SCHEMA_ID
    schema["title"] = "cloudkeep policy"
    props = schema["properties"]
    props["datasets"]["propertyNames"] = {"pattern": DATASET_NAME_RE.pattern}
    for key in ("stores", "tiers"):
        props[key]["propertyNames"] = {"minLength": 1}
    return schema


# ------------------------------------------------------------------------------ reference


def _section(name: str) -> str:
    return name.lower()


def _type_of(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[-1]
        return f"[{name}](#{_section(name)})"
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in prop["enum"])
    if "anyOf" in prop or "oneOf" in prop:
        options = prop.get("anyOf") or prop.get("oneOf") or []
        shown = [_type_of(o) for o in options if o.get("type") != "null"]
        nullable = any(o.get("type") == "null" for o in options)
        return " or ".join(shown) + (" or null" if nullable else "")
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type_of(prop.get('items', {}))}"
    if kind == "object":
        inner = prop.get("additionalProperties")
        if isinstance(inner, dict):
            return f"map: name → {_type_of(inner)}"
        return "mapping"
    if kind == "string" and prop.get("description", "").startswith("a duration"):
        return "duration"
    return {"string": "string", "integer": "integer", "boolean": "true/false",
            "number": "number"}.get(str(kind), "any")


def _constraints(prop: dict[str, Any]) -> list[str]:
    out = []
    for p in [prop, *(prop.get("anyOf") or [])]:
        if "minimum" in p:
            out.append(f"≥ {p['minimum']}")
        if "maximum" in p:
            out.append(f"≤ {p['maximum']}")
        if "minLength" in p and p.get("type") == "string" and "pattern" not in p:
            n = p["minLength"]
            out.append("not empty" if n == 1 else f"at least {n} characters")
        if "maxLength" in p:
            out.append(f"at most {p['maxLength']} characters")
        if "pattern" in p and not p.get("description", "").startswith(("a duration", "a delay", "a 5-field")):
            out.append(f"matches `{p['pattern']}`")
    return out


def _text(doc: str) -> str:
    """A docstring or description as one markdown paragraph (``x`` → `x`)."""
    return re.sub(r"``([^`]+)``", r"`\1`", " ".join(doc.split()))


def _paths(schema: dict[str, Any]) -> dict[str, list[str]]:
    """Where each model appears in a policy file, as dotted paths (`datasets.<name>.source`)."""
    found: dict[str, list[str]] = {}

    def walk(prop: dict[str, Any], path: str) -> None:
        if "$ref" in prop:
            name = prop["$ref"].rsplit("/", 1)[-1]
            if path in found.setdefault(name, []):
                return
            found[name].append(path)
            for key, sub in schema["$defs"][name].get("properties", {}).items():
                walk(sub, f"{path}.{key}")
            return
        for option in prop.get("anyOf", []) + prop.get("oneOf", []):
            walk(option, path)
        if prop.get("type") == "array" and isinstance(prop.get("items"), dict):
            walk(prop["items"], f"{path}[]")
        if isinstance(prop.get("additionalProperties"), dict):
            walk(prop["additionalProperties"], f"{path}.<name>")

    for key, prop in schema["properties"].items():
        walk(prop, key)
    return found


def _table(model: dict[str, Any]) -> list[str]:
    required = set(model.get("required", []))
    rows = ["| key | type | required / default | meaning |", "| --- | --- | --- | --- |"]
    for key, prop in model.get("properties", {}).items():
        if key in required:
            need = "**required**"
        elif "default" in prop:
            need = f"default `{json.dumps(prop['default'])}`"
        else:
            need = "optional"
        meaning = _text(prop.get("description", ""))
        extra = _constraints(prop)
        if extra:
            meaning = (meaning + " " if meaning else "") + f"({', '.join(extra)})"
        meaning = meaning.replace("|", "\\|")
        rows.append(f"| `{key}` | {_type_of(prop)} | {need} | {meaning} |")
    return rows


def reference_markdown() -> str:
    """docs/policy-reference.md."""
    schema = json_schema()
    paths = _paths(schema)
    lines = [
        "# Policy reference",
        "",
        "<!-- Generated from the pydantic models in shared/cloudkeep/policy/ and the adapters' specs by `make schema`",
        "     (python -m cloudkeep.policy_doc reference). Do not edit by hand: a test keeps it current. -->",
        "",
        "A policy is one YAML file (default `./cloudkeep.yaml`, else `$CLOUDKEEP_POLICY`; also",
        "`s3://`, `gs://` or `az://` URLs). `cloudkeep validate` checks it and names every problem",
        "with its line and field path; `cloudkeep init` writes a commented starter. Editors can",
        "validate it as it is typed against [`schemas/policy.schema.json`](../schemas/policy.schema.json)",
        "(with the YAML language server: `# yaml-language-server: $schema=schemas/policy.schema.json`",
        "as the file's first line).",
        "",
        "Durations are written `90m`, `26h`, `7d`, `2w` or `1h30m`. Schedules are 5-field cron",
        "expressions in the policy's time zone or `rate(N minutes|hours|days)`.",
        "",
        "Limits (checked while the file is read and parsed, each a clear error with exit 2): the",
        f"policy is a regular file or object of at most {MAX_POLICY_BYTES} bytes (a directory, a FIFO",
        f"or a device is refused at once); YAML nests at most {MAX_YAML_DEPTH} levels deep and uses at",
        f"most {MAX_YAML_ALIASES} aliases, which expand to at most {MAX_YAML_NODES} values in all; an",
        "alias inside the node it names is refused. Durations and `rate(...)` intervals are at most",
        f"`{MAX_DURATION.days}d` (about 100 years); retention counts are bounded as shown below.",
        "",
        "## Copies and store identity",
        "",
        "A store in `copy_to` must be at another location than the dataset's own store and than",
        "every other store of the same `copy_to`, and a tier's `min_copies` may not exceed the copy",
        "stores at distinct locations each of its datasets copies to (else retention could never",
        "remove a snapshot). Two stores are at the same location when the objects of one would sit",
        "at, or inside, the other's — stores of different types never are:",
        "",
        "- `file`: the same folder once resolved (relative to the policy's folder, `~` expanded,",
        "  `..` and symbolic links resolved, trailing slashes ignored), or one folder inside the other.",
        "- `s3`: the same service — AWS itself whatever the `region` or regional endpoint",
        "  (`https://s3.REGION.amazonaws.com` is AWS); otherwise the `endpoint_url` compared without",
        "  credentials, default port, trailing slash or case (without `endpoint_url`,",
        "  `$AWS_ENDPOINT_URL_S3` or `$AWS_ENDPOINT_URL` decide, as they do for boto3) — the same",
        "  bucket, and prefixes equal or one inside the other (leading and trailing slashes ignored).",
        "- `gcs`: the same bucket (whatever the `project`), prefixes as for `s3`.",
        "- `azure_blob`: the same storage account — from the connection string in",
        "  `connection_string_env` when that variable is set (its `BlobEndpoint`, else its",
        "  `AccountName`), else `account_url`, compared like an endpoint — the same container,",
        "  prefixes as for `s3`. Two unset variables without `account_url` are the same account only",
        "  if they are the same variable.",
        "",
        "## Policy",
        "",
        _text(schema.get("description", "")),
        "",
        *_table(schema),
        "",
    ]
    order = list(paths)  # first appearance while walking from the top: stores, tiers, datasets
    for name in order + sorted(set(schema["$defs"]) - set(order)):
        model = schema["$defs"][name]
        lines += [f"## {name}", ""]
        where = paths.get(name)
        if where:
            lines += ["At " + ", ".join(f"`{p}`" for p in where) + ".", ""]
        if model.get("description"):
            lines += [_text(model["description"]), ""]
        if "properties" in model:
            lines += [*_table(model), ""]
        elif "enum" in model:
            lines += ["One of " + ", ".join(f"`{json.dumps(v)}`" for v in model["enum"]) + ".", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    if argv == ["schema"]:
        print(json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False))
        return 0
    if argv == ["reference"]:
        sys.stdout.write(reference_markdown())
        return 0
    print("usage: python -m cloudkeep.policy_doc schema|reference", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover - make schema
    sys.exit(main(sys.argv[1:]))
