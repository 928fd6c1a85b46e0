#!/usr/bin/env python3
"""Validates Kubernetes objects offline, each against its schema; exits 1 naming every object that fails.

    kubectl kustomize deploy/kubernetes/overlays/istio | .venv/bin/python scripts/validate-manifests.py -

Kubernetes kinds are checked with kubernetes-validate (the OpenAPI schemas of the Kubernetes version below,
strict: an unknown field is an error, as with `kubectl apply --validate=strict`). Istio kinds are checked against
the openAPIV3Schema of Istio's CRDs checked in under deploy/kubernetes/schemas/istio/, made strict the same way
(objects without x-kubernetes-preserve-unknown-fields accept only the fields they declare). CEL rules
(x-kubernetes-validations) are not evaluated.
"""
import copy
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.32.0"
ROOT = pathlib.Path(__file__).resolve().parent.parent
CRDS = ROOT / "deploy/kubernetes/schemas/istio/crds.yaml"


def strict(schema):
    """A copy of an OpenAPI v3 schema where declared objects reject unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # apiVersion, kind and metadata are checked by the API server for every object, not by the CRD schema.
    for field in ("apiVersion", "kind", "metadata"):
        schema.setdefault("properties", {}).setdefault(field, {})
    return schema


def crd_schemas():
    """(apiVersion, kind) -> strict schema, for every version each checked-in CRD serves."""
    schemas = {}
    for crd in yaml.safe_load_all(CRDS.read_text()):
        if not crd:
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = version["schema"]["openAPIV3Schema"]
                schemas[(f"{group}/{version['name']}", kind)] = strict(schema)
    return schemas


def name_of(obj):
    meta = obj.get("metadata") or {}
    where = f"{meta.get('namespace')}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


def errors_of(obj, schemas):
    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        return ["not a Kubernetes object (no apiVersion/kind)"]
    key = (obj["apiVersion"], obj["kind"])
    if key in schemas:
        validator = jsonschema.Draft7Validator(schemas[key])
        return [
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in validator.iter_errors(obj)
        ]
    if obj["apiVersion"].split("/")[0].endswith("istio.io"):
        return [f"no schema for {key[0]} {key[1]} (add its CRD to {CRDS.relative_to(ROOT)})"]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(str(p) for p in e.path) or '<root>'}: {e.message}"]
    except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
        return [str(e)]
    return []


def main(paths):
    schemas = crd_schemas()
    texts = [sys.stdin.read() if p == "-" else pathlib.Path(p).read_text() for p in paths or ["-"]]
    failed = checked = 0
    for text in texts:
        for obj in yaml.safe_load_all(text):
            if obj is None:
                continue
            checked += 1
            errors = errors_of(obj, schemas)
            if errors:
                failed += 1
                for error in errors:
                    print(f"INVALID {name_of(obj)}: {error}")
            else:
                print(f"valid   {name_of(obj)}")
    if checked == 0:
        print("no objects to validate")
        return 1
    print(f"{checked - failed}/{checked} objects valid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
