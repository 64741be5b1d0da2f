"""Extracts a CRD's openAPIV3Schema as a strict JSON Schema for check-jsonschema.

  extract-crd-schema.py REPO_DIR COMMIT PATH ORIGIN OUT.json

Run with the chart tools' venv python (ruamel.yaml); the outputs are committed in
deploy/helm/crd-schemas/ (README there names the sources).
"""
import json, sys, subprocess
from ruamel.yaml import YAML
# args: repo_dir commit path version out
repo, commit, path, origin, out = sys.argv[1:6]
text = subprocess.check_output(["git", "-C", repo, "show", f"{commit}:{path}"], text=True)
yaml = YAML(typ="safe")
docs = [d for d in yaml.load_all(text) if d]
crd = next(d for d in docs if d.get("kind") == "CustomResourceDefinition")
group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
schema = version["schema"]["openAPIV3Schema"]
def strict(node):
    if isinstance(node, dict):
        # Go's inline flags mid-pattern ("^(?i)(abort|warn)?$") are not valid JSON Schema
        # (ECMA 262) regexes: such a pattern is dropped.
        if isinstance(node.get("pattern"), str) and "(?i)" in node["pattern"]:
            del node["pattern"]
        if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values(): strict(v)
    elif isinstance(node, list):
        for v in node: strict(v)
strict(schema)
schema["properties"]["apiVersion"] = {"const": f"{group}/{version['name']}"}
schema["properties"]["kind"] = {"const": kind}
schema["properties"]["metadata"] = {"type": "object"}
schema.setdefault("required", [])
for r in ("apiVersion", "kind", "metadata"):
    if r not in schema["required"]: schema["required"].append(r)
schema = {"$schema": "http://json-schema.org/draft-07/schema#",
          "$comment": f"openAPIV3Schema of {crd['metadata']['name']} {version['name']} from {origin} {path} at commit {commit}; made strict (additionalProperties: false where the CRD lists properties and does not preserve unknown fields; case-insensitive Go patterns dropped) by scripts/extract-crd-schema.py",
          **schema}
json.dump(schema, open(out, "w"), indent=1, sort_keys=True)
print(out, kind, version["name"])
