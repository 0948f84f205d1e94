"""Offline schema validation of the custom resources the overlays use (CloudNativePG, Barman Cloud, External Secrets).

``kubernetes-validate`` knows only the built-in kinds. The files in ``tests/deploy/crds/`` hold, for each custom
kind, the ``openAPIV3Schema`` its project publishes in its CRD (descriptions and ``status`` removed to keep them
small; each file names its source). :func:`problems` checks a document against it as strictly as
``kubectl apply --validate=strict`` would: wrong types, missing required fields, values outside an enum or pattern,
and unknown fields (except under ``x-kubernetes-preserve-unknown-fields``). Not evaluated: the CEL rules
(``x-kubernetes-validations``) and the operators' admission webhooks (e.g. CloudNativePG's list of allowed PgBouncer
parameters), which the policy tests check where it matters.

Refresh from a newer release's CRD files (the project's own ``config/crd/bases/*.yaml``)::

    python -m tests.deploy.crd_schemas --source "cloudnative-pg/cloudnative-pg v1.30.0, config/crd/bases" \
        postgresql.cnpg.io_clusters.yaml ...
"""

from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # jsonschema ships no type information; used in two calls
import yaml

from tests.deploy.kustomize_lite import Doc

CRD_DIR = Path(__file__).resolve().parent / "crds"
# Keys that only document a schema or that JSON Schema cannot check (CEL rules): dropped when a file is written.
_DROPPED = frozenset({"description", "x-kubernetes-validations"})


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _strip(value) for key, value in node.items() if key not in _DROPPED}
    if isinstance(node, list):
        return [_strip(item) for item in node]
    return node


def extract(crd: Doc, source: str) -> list[Doc]:
    """One stored schema per served version of ``crd``."""
    names = crd["spec"]["names"]
    stored = []
    for version in crd["spec"]["versions"]:
        if not version.get("served", True):
            continue
        schema = copy_without_status(version["schema"]["openAPIV3Schema"])
        stored.append(
            {
                "apiVersion": f"{crd['spec']['group']}/{version['name']}",
                "kind": names["kind"],
                "source": source,
                "openAPIV3Schema": _strip(schema),
            }
        )
    return stored


def copy_without_status(schema: Doc) -> Doc:
    properties = {key: value for key, value in schema["properties"].items() if key != "status"}
    return {**schema, "properties": properties}


def to_json_schema(node: Any) -> Any:
    """A Kubernetes structural schema as a strict JSON Schema: closed objects, nullable and int-or-string types."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: to_json_schema(value) for key, value in node.items() if not key.startswith("x-kubernetes-")}
    converted.pop("nullable", None)
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        converted["type"] = ["integer", "string"]
    if node.get("nullable") and isinstance(converted.get("type"), str):
        converted["type"] = [converted["type"], "null"]
    closed = not node.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in node and "additionalProperties" not in node and closed:
        converted["additionalProperties"] = False
    return converted


@functools.cache
def _validators() -> dict[tuple[str, str], Any]:
    validators = {}
    for path in sorted(CRD_DIR.glob("*.json")):
        stored = json.loads(path.read_text())
        schema = to_json_schema(stored["openAPIV3Schema"])
        validators[(stored["apiVersion"], stored["kind"])] = jsonschema.Draft202012Validator(schema)
    return validators


def known_kinds() -> frozenset[tuple[str, str]]:
    """The (apiVersion, kind) pairs a schema is stored for."""
    return frozenset(_validators())


def problems(doc: Doc) -> list[str]:
    """Every schema violation in ``doc`` as ``path: message`` (empty when it is valid)."""
    validator = _validators()[(doc["apiVersion"], doc["kind"])]
    found = []
    for error in validator.iter_errors(doc):
        path = ".".join(str(part) for part in error.absolute_path) or "(top)"
        found.append(f"{doc['kind']}/{doc['metadata'].get('name')} {path}: {error.message}")
    return sorted(found)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="store the schemas of CRD files in tests/deploy/crds")
    parser.add_argument("--source", required=True, help="project and release the CRD files come from")
    parser.add_argument("crds", nargs="+", type=Path)
    options = parser.parse_args(argv)
    for path in options.crds:
        for stored in extract(yaml.safe_load(path.read_text()), f"{options.source}/{path.name}"):
            group, _, version = stored["apiVersion"].partition("/")
            target = CRD_DIR / f"{group}_{version}_{stored['kind']}.json"
            target.write_text(json.dumps(stored, separators=(",", ":"), sort_keys=True) + "\n")
            print(f"wrote {target}")


if __name__ == "__main__":
    main()
