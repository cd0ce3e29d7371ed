"""Regenerate ``kuberay_v1_schema.json``: KubeRay's v1 CRD schemas pruned to the fields we use.

Usage: ``python tests/unit/cluster/make_kuberay_schema.py KUBERAY_CHECKOUT [TAG]``
(TAG defaults to v1.7.0; reads ``ray-operator/config/crd/bases/ray.io_{rayclusters,rayjobs}.yaml``
at that tag with ``git show``). Not a test; run by hand when KubeRay's CRD changes.

The result holds a JSON schema of each CRD's ``spec``: every object with declared properties rejects
unknown keys (``additionalProperties: false``), types and enums are kept, descriptions dropped.
Pod templates (stored once, as ``definitions.PodTemplateSpec``) keep the PodSpec's own keys and
the container and volume fields raypipe's manifests use; deeper pod-spec subtrees (probes,
affinity, security contexts, ...) are accepted unchecked.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

#: Subtrees accepted as any value: large Kubernetes types raypipe's manifests do not set.
UNCHECKED = {
    "affinity",
    "securityContext",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "ephemeralContainers",
    "initContainers",
    "valueFrom",
    "headService",
    "networkPolicy",
    "gcsFaultToleranceOptions",
    "historyServerOptions",
    "submitterPodTemplate",
    "dnsConfig",
    "topologySpreadConstraints",
    "tolerations",
    "resourceClaims",
    "os",
    "overhead",
    "readinessGates",
    "schedulingGates",
    "hostAliases",
    "deletionStrategy",
    "ingressOptions",
    "envFrom",
    "resizePolicy",
    "restartPolicyRules",
    "claims",
    "imagePullSecrets",
    "schedulingGroup",
    "metadata_",
}
#: Volume sources checked; other sources are accepted unchecked.
VOLUME_FIELDS = {"name", "emptyDir", "persistentVolumeClaim", "configMap", "secret", "hostPath"}


def prune(
    schema: dict[str, Any], key: str | None = None, defs: dict[str, Any] | None = None
) -> dict[str, Any]:
    if key in UNCHECKED:
        return {}
    if key == "template" and defs is not None:
        # Every pod template is a PodTemplateSpec: stored once, referenced.
        defs.setdefault("PodTemplateSpec", prune(schema, "pod-template", defs))
        return {"$ref": "#/definitions/PodTemplateSpec"}
    out: dict[str, Any] = {}
    if "enum" in schema:
        out["enum"] = schema["enum"]
    if "type" in schema and not schema.get("x-kubernetes-int-or-string"):
        out["type"] = schema["type"]
    if schema.get("type") == "array" and "items" in schema:
        out["items"] = prune(schema["items"], key, defs)
    properties = schema.get("properties")
    if properties:
        if key == "volumes":
            properties = {k: v for k, v in properties.items() if k in VOLUME_FIELDS}
            out["additionalProperties"] = True
        else:
            out["additionalProperties"] = False
        out["properties"] = {k: prune(v, k, defs) for k, v in properties.items()}
        if schema.get("required"):
            out["required"] = schema["required"]
    return out


def main(checkout: str, tag: str = "v1.7.0") -> None:
    commit = subprocess.check_output(
        ["git", "-C", checkout, "rev-parse", f"{tag}^{{commit}}"], text=True
    ).strip()
    definitions: dict[str, Any] = {}
    result: dict[str, Any] = {
        "source": f"ray-project/kuberay@{tag} ({commit})",
        "definitions": definitions,
    }
    for kind, plural in (("RayCluster", "rayclusters"), ("RayJob", "rayjobs")):
        text = subprocess.check_output(
            [
                "git",
                "-C",
                checkout,
                "show",
                f"{tag}:ray-operator/config/crd/bases/ray.io_{plural}.yaml",
            ],
            text=True,
        )
        crd = yaml.safe_load(text)
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
        result[kind] = prune(spec, "spec", definitions)
    out = Path(__file__).with_name("kuberay_v1_schema.json")
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main(*sys.argv[1:])
