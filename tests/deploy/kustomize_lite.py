"""A small offline kustomize, for machines without ``kubectl``.

It implements only the subset ``k8s/`` uses, in kustomize's order: resources, then components, then generators,
then patches, then the labels, images and namespace transformers:

- ``resources``: files and directories (a directory is rendered as a kustomization first);
- ``components``: directories holding a ``kind: Component`` kustomization. Each one is accumulated into the
  including kustomization in order: its resources are added, then its generators run and its patches and
  transformers apply to everything accumulated so far (the includer's resources and earlier components too);
- ``secretGenerator`` with ``literals``, only with ``generatorOptions.disableNameSuffixHash: true``;
- ``patches`` given by ``path``: strategic-merge patches found by kind and name. Maps merge key by key, ``null``
  deletes a key, lists of named maps (containers, env, ports...) merge by ``name`` with new items first (as
  kustomize orders them), any other list is replaced;
- ``labels`` without ``includeSelectors``/``includeTemplates``: added to every object's ``metadata.labels``;
- ``images``: ``newName``/``newTag``/``digest`` for every container and init container;
- ``namespace``: set on every namespaced object.

Anything else raises :class:`UnsupportedKustomization` rather than render something kustomize would not. When
kubectl is present, tests compare this renderer's output with ``kubectl kustomize`` so the two cannot drift.
Written by hand because the only full implementation is kustomize itself (Go); this is a test helper, not a tool.
"""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

SUPPORTED_KEYS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "components",
        "namespace",
        "labels",
        "images",
        "patches",
        "secretGenerator",
        "generatorOptions",
    }
)
KUSTOMIZATION = "Kustomization"
COMPONENT = "Component"
CLUSTER_SCOPED_KINDS = frozenset({"Namespace"})
CONTAINER_LISTS = ("containers", "initContainers")


class UnsupportedKustomization(ValueError):
    """The kustomization uses a feature this renderer does not implement."""


def load_documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[Doc]:
    """Every object the kustomization in ``directory`` produces, like ``kubectl kustomize directory``."""
    return _accumulate(directory, _kustomization(directory, KUSTOMIZATION), [])


def _kustomization(directory: Path, kind: str) -> Doc:
    kustomization = load_documents(directory / "kustomization.yaml")[0]
    unknown = set(kustomization) - SUPPORTED_KEYS
    if unknown:
        raise UnsupportedKustomization(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    # kustomize defaults a missing kind to Kustomization; a component must say that it is one.
    found = kustomization.get("kind", KUSTOMIZATION)
    if found != kind:
        raise UnsupportedKustomization(f"{directory}: expected a {kind}, found a {found}")
    return kustomization


def _accumulate(directory: Path, kustomization: Doc, docs: list[Doc]) -> list[Doc]:
    """``docs`` with ``kustomization``'s resources, components, generators and transformers applied to them."""
    for entry in kustomization.get("resources", []):
        path = directory / entry
        docs.extend(render(path) if path.is_dir() else load_documents(path))
    for entry in kustomization.get("components", []):
        path = directory / entry
        _accumulate(path, _kustomization(path, COMPONENT), docs)
    docs.extend(_generate_secrets(kustomization))
    for patch in kustomization.get("patches", []):
        if set(patch) != {"path"}:
            raise UnsupportedKustomization(f"{directory}: only `patches: - path: file` is supported, got {patch}")
        for patch_doc in load_documents(directory / patch["path"]):
            _apply_patch(docs, patch_doc)
    for label_set in kustomization.get("labels", []):
        _add_labels(docs, label_set)
    for image in kustomization.get("images", []):
        _set_image(docs, image)
    if "namespace" in kustomization:
        _set_namespace(docs, kustomization["namespace"])
    return docs


def _generate_secrets(kustomization: Doc) -> list[Doc]:
    generators = kustomization.get("secretGenerator", [])
    if generators and not kustomization.get("generatorOptions", {}).get("disableNameSuffixHash"):
        raise UnsupportedKustomization("secretGenerator needs generatorOptions.disableNameSuffixHash: true")
    secrets = []
    for generator in generators:
        if set(generator) != {"name", "literals"}:
            raise UnsupportedKustomization(f"only name and literals are supported in secretGenerator: {generator}")
        data = {}
        for literal in generator["literals"]:
            key, _, value = literal.partition("=")
            data[key] = base64.b64encode(value.encode()).decode()
        secrets.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"]},
                "type": "Opaque",
                "data": data,
            }
        )
    return secrets


def _apply_patch(docs: list[Doc], patch: Doc) -> None:
    name = patch["metadata"]["name"]
    targets = [doc for doc in docs if doc["kind"] == patch["kind"] and doc["metadata"]["name"] == name]
    if len(targets) != 1:
        raise UnsupportedKustomization(f"patch for {patch['kind']}/{name} matches {len(targets)} objects, not 1")
    merged = strategic_merge(targets[0], patch)
    targets[0].clear()
    targets[0].update(merged)


def strategic_merge(original: Any, patch: Any) -> Any:
    """``patch`` merged into a copy of ``original`` (the strategic-merge subset described in the module doc)."""
    if isinstance(original, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(original)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = strategic_merge(merged[key], value) if key in merged else copy.deepcopy(value)
        return merged
    if _named_maps(original) and _named_maps(patch):
        by_name = {item["name"]: item for item in patch}
        existing = {item["name"] for item in original}
        added = [copy.deepcopy(item) for item in patch if item["name"] not in existing]
        kept = [strategic_merge(item, by_name[item["name"]]) if item["name"] in by_name else item for item in original]
        return added + kept
    return copy.deepcopy(patch)


def _named_maps(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) and "name" in item for item in value)


def _add_labels(docs: list[Doc], label_set: Doc) -> None:
    if (
        label_set.get("includeSelectors")
        or label_set.get("includeTemplates")
        or set(label_set)
        - {
            "pairs",
            "includeSelectors",
            "includeTemplates",
        }
    ):
        raise UnsupportedKustomization(f"only `labels: - pairs:` without selectors/templates is supported: {label_set}")
    for doc in docs:
        doc["metadata"].setdefault("labels", {}).update(label_set["pairs"])


def containers(doc: Doc) -> Iterator[Doc]:
    """Every container and init container anywhere in ``doc`` (pod templates of any workload kind)."""
    stack: list[Any] = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in CONTAINER_LISTS and isinstance(value, list):
                    yield from value
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``registry/name:tag@digest`` -> (``registry/name``, tag, digest)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest or None
    return name, None, digest or None


def _set_image(docs: list[Doc], image: Doc) -> None:
    if set(image) - {"name", "newName", "newTag", "digest"}:
        raise UnsupportedKustomization(f"unsupported images entry {image}")
    for doc in docs:
        for container in containers(doc):
            if "image" not in container:
                continue  # e.g. a Pooler's template naming its pgbouncer container only to size it
            name, tag, digest = split_image(container["image"])
            if name != image["name"]:
                continue
            new = image.get("newName", name)
            tag = image.get("newTag", tag)
            digest = image.get("digest", digest)
            container["image"] = new + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _set_namespace(docs: list[Doc], namespace: str) -> None:
    for doc in docs:
        if doc["kind"] in CLUSTER_SCOPED_KINDS:
            if doc["kind"] == "Namespace" and doc["metadata"]["name"] != namespace:
                raise UnsupportedKustomization(f"Namespace {doc['metadata']['name']} differs from {namespace}")
            continue
        doc["metadata"]["namespace"] = namespace
