"""Shared by the chart checks: paths, tool invocations and rendering helpers."""

import os
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy/helm/tollgate"
CI = CHART / "ci"
GOLDEN = CI / "golden"
K8S = ROOT / "deploy/k8s"
CRD_SCHEMAS = ROOT / "deploy/helm/crd-schemas"
BIN = Path(os.environ["CHART_TOOLS_BIN"])
PROMTOOL = ROOT / "scripts/promtool.sh"
RELEASE = "tollgate"
# The oldest Kubernetes the chart supports and the newest the validator ships.
KUBE_VERSIONS = ["1.25.0", "1.37.0"]
GOLDEN_KUBE = "1.37.0"
# deploy/k8s is rendered for clusters from this version on (PDBs' unhealthyPodEvictionPolicy).
K8S_KUBE = "1.30.0"
CRD_KINDS = {
    "ServiceMonitor": "servicemonitor-monitoring-v1.json",
    "PrometheusRule": "prometheusrule-monitoring-v1.json",
    "Issuer": "issuer-certmanager-v1.json",
    "ClusterIssuer": "clusterissuer-certmanager-v1.json",
}
VALUES_FILES = ["default", "production", "minimal"]


class CheckFailed(Exception):
    pass


def run(cmd, *, stdin=None, check=True):
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if check and proc.returncode != 0:
        out = (proc.stdout + proc.stderr)[-3000:]
        raise CheckFailed(f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{out}")
    return proc


def helm_template(values_files=(), sets=(), kube=GOLDEN_KUBE, check=True):
    cmd = [BIN / "helm", "template", RELEASE, CHART, "--namespace", "saas-platform", "--kube-version", kube]
    for f in values_files:
        cmd += ["-f", f]
    for s in sets:
        cmd += ["--set", s]
    return run(cmd, check=check)


def docs_of(text):
    return [d for d in yaml.safe_load_all(text) if d]


def render_docs(values_files=(), sets=(), kube=GOLDEN_KUBE):
    return docs_of(helm_template(values_files, sets, kube).stdout)


def ci_file(name):
    return CI / f"{name}-values.yaml"


def kinds_names(docs):
    return {(d["kind"], d["metadata"]["name"]) for d in docs}


def pod_specs(docs):
    for d in docs:
        kind = d["kind"]
        if kind == "Pod":
            yield d["metadata"]["name"], d["spec"]
        elif kind in ("Deployment", "StatefulSet", "Job"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield d["metadata"]["name"], d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
