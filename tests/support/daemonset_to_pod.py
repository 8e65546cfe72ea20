#!/usr/bin/env python3
"""The pod a DaemonSet would run, for `podman kube play` (podman 4.3 plays
Pods and Deployments, not DaemonSets).

    daemonset_to_pod.py MANIFEST OUTDIR --name POD --secret NAME [--set KEY=VALUE]...

MANIFEST holds the DaemonSet and the ConfigMap its pods read. Writes
OUTDIR/pod.yaml (the DaemonSet's .spec.template as a Pod named POD, its
secretKeyRef names changed to NAME and its configMapRef names to POD-env)
and OUTDIR/configmap.yaml (that ConfigMap as POD-env, KEY=VALUE applied:
what differs off a cluster, the collector's address). Prints the first
container's image and resources as JSON. Nothing else is changed.
"""
import argparse
import json
import os
import sys

import yaml


def main():
    p = argparse.ArgumentParser()
    p.add_argument("manifest")
    p.add_argument("outdir")
    p.add_argument("--name", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--set", action="append", default=[])
    a = p.parse_args()
    with open(a.manifest) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    ds = [d for d in docs if d.get("kind") == "DaemonSet"]
    cms = [d for d in docs if d.get("kind") == "ConfigMap"]
    if len(ds) != 1 or len(cms) != 1:
        sys.exit(f"{a.manifest}: expected one DaemonSet and one ConfigMap, found {len(ds)} and {len(cms)}")
    template = ds[0]["spec"]["template"]
    spec = template["spec"]
    cm_name = a.name + "-env"
    for c in spec["containers"]:
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                ref["name"] = a.secret
        for e in c.get("envFrom", []):
            if "configMapRef" in e:
                e["configMapRef"]["name"] = cm_name
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": a.name, "labels": template["metadata"].get("labels", {})},
        "spec": spec,
    }
    cm = cms[0]
    cm["metadata"] = {"name": cm_name}
    for kv in a.set:
        k, v = kv.split("=", 1)
        if k not in cm["data"]:
            sys.exit(f"--set {k}: not in the ConfigMap")
        cm["data"][k] = v
    with open(os.path.join(a.outdir, "pod.yaml"), "w") as f:
        yaml.safe_dump(pod, f, sort_keys=False)
    with open(os.path.join(a.outdir, "configmap.yaml"), "w") as f:
        yaml.safe_dump(cm, f, sort_keys=False)
    c = spec["containers"][0]
    print(json.dumps({"image": c["image"], "resources": c.get("resources", {})}))


if __name__ == "__main__":
    main()
