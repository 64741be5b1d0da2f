"""The Helm chart's checks (run by scripts/chart-checks.sh with the chart tools' venv).

Each check is one test in `make test`'s summary: lint, strict schema validation of every
render against the oldest and the newest Kubernetes the validator ships, CRD objects against
their CRDs' schemas, golden renders, the plain manifests in deploy/k8s, toggles, refusals of
bad values, promtool on the alert rules, the dashboards, the adapter rules against the HPA,
and (given a file of scraped names) every metric name the monitoring uses against what the
binaries export. Prints `test result: … N passed; M failed` like cargo, so run-tests.sh counts it.

  chart_checks.py [--update] [--exported FILE] [--only SUBSTRING]
"""

import argparse
import json
import re
import sys
import tempfile
import traceback
from pathlib import Path

import yaml

from chart_monitoring_checks import (
    check_adapter_names_match_hpa,
    check_alert_tests_cover_every_alert,
    check_dashboards,
    check_metric_names_exported,
    check_promtool_rules,
)
from chart_render import (
    BIN, CHART, CI, CRD_KINDS, CRD_SCHEMAS, GOLDEN, K8S, K8S_KUBE, KUBE_VERSIONS, ROOT, VALUES_FILES,
    CheckFailed, ci_file, docs_of, helm_template, kinds_names, pod_specs, render_docs, run,
)


# --- checks -----------------------------------------------------------------------------

def check_lint(name):
    run([BIN / "helm", "lint", "--strict", CHART, "-f", ci_file(name)])


def check_validate(name, kube):
    text = helm_template([ci_file(name)], kube=kube).stdout
    docs = docs_of(text)
    core = [d for d in docs if d["kind"] not in CRD_KINDS]
    crds = [d for d in docs if d["kind"] in CRD_KINDS]
    with tempfile.TemporaryDirectory() as tmp:
        core_file = Path(tmp) / "core.yaml"
        core_file.write_text(yaml.safe_dump_all(core, sort_keys=False))
        proc = run([BIN / "kubernetes-validate", "--strict", "-k", kube, core_file], check=False)
        output = proc.stdout + proc.stderr
        if proc.returncode != 0 or re.search(r"(?i)could(n't| not) find schema|WARN|ERROR", output):
            raise CheckFailed(f"kubernetes-validate {kube}:\n{output}")
        for i, d in enumerate(crds):
            f = Path(tmp) / f"crd-{i}.json"
            f.write_text(json.dumps(d))
            run([BIN / "check-jsonschema", "--schemafile", CRD_SCHEMAS / CRD_KINDS[d["kind"]], f])
    if name != "minimal" and not crds:
        raise CheckFailed("no ServiceMonitor/PrometheusRule/issuer rendered to check")


def check_newest_kubernetes_is_validated():
    """KUBE_VERSIONS ends at the newest Kubernetes the installed validator has schemas for, so
    a newer validator does not leave the newest release unchecked."""
    import kubernetes_validate

    schemas = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    versions = [tuple(map(int, m.group(1, 2))) for p in schemas.iterdir()
                if (m := re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", p.name))]
    newest = "%d.%d.0" % max(versions)
    if KUBE_VERSIONS[-1] != newest or KUBE_VERSIONS[0] != "%d.%d.0" % min(versions):
        raise CheckFailed(f"the validator ships {'%d.%d' % min(versions)}..{newest}; KUBE_VERSIONS is {KUBE_VERSIONS}")


def check_golden(name, update):
    text = helm_template([ci_file(name)]).stdout
    golden = GOLDEN / f"{name}.yaml"
    if update:
        GOLDEN.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
        return
    if not golden.exists() or golden.read_text() != text:
        diff = run(["diff", "-u", golden, "-"], stdin=text, check=False).stdout
        raise CheckFailed(f"{golden.relative_to(ROOT)} differs from a fresh render "
                          f"(scripts/chart-checks.sh --update rewrites it):\n{diff[:4000]}")


def split_plain_manifests(text):
    """deploy/k8s: what must exist before the workloads (namespace, migrations), the release
    itself, and the test pod, as three files applied in order."""
    pre, main, tests = [], [], []
    for raw in re.split(r"(?m)^---\s*$", text):
        doc = yaml.safe_load(raw)
        if not doc:
            continue
        hook = (doc["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
        target = tests if hook == "test" else pre if hook else main
        target.append(raw.strip("\n") + "\n")
    header = "# Rendered from deploy/helm/tollgate with deploy/k8s/values.yaml by scripts/chart-checks.sh --update; do not edit.\n"
    join = lambda parts: header + "".join(f"---\n{p}" for p in parts)
    return {
        "00-namespace-and-migrations.yaml": join(pre),
        "10-tollgate.yaml": join(main),
        "90-helm-test.yaml": join(tests),
    }


def check_plain_manifests(update):
    text = helm_template([K8S / "values.yaml"], kube=K8S_KUBE).stdout
    files = split_plain_manifests(text)
    for fname, content in files.items():
        path = K8S / fname
        if update:
            path.write_text(content)
        elif not path.exists() or path.read_text() != content:
            diff = run(["diff", "-u", path, "-"], stdin=content, check=False).stdout
            raise CheckFailed(f"deploy/k8s/{fname} differs from a fresh render (--update rewrites it):\n{diff[:4000]}")
    stale = {p.name for p in K8S.glob("*.yaml")} - set(files) - {"values.yaml"}
    if stale:
        raise CheckFailed(f"deploy/k8s has files the render does not produce: {sorted(stale)}")


# A toggle, the values that switch it off, and the objects that must then be absent (and
# present with the defaults).
TOGGLES = {
    "namespace.create": (["namespace.create=false"], [("Namespace", "saas-platform")]),
    "gateway.enabled": (["gateway.enabled=false"], [("StatefulSet", "gateway"), ("HorizontalPodAutoscaler", "gateway"), ("ConfigMap", "gateway-config"), ("Service", "gateway"), ("ServiceAccount", "gateway-sa"), ("NetworkPolicy", "gateway"), ("Ingress", "gateway"), ("PodDisruptionBudget", "gateway"), ("ServiceMonitor", "gateway")]),
    "gateway.hpa.enabled": (["gateway.hpa.enabled=false"], [("HorizontalPodAutoscaler", "gateway")]),
    "gateway.pdb.enabled": (["gateway.pdb.enabled=false"], [("PodDisruptionBudget", "gateway")]),
    "usageAggregator.enabled": (["usageAggregator.enabled=false"], [("Deployment", "usage-aggregator"), ("ServiceAccount", "usage-aggregator-sa"), ("NetworkPolicy", "usage-aggregator"), ("PodDisruptionBudget", "usage-aggregator")]),
    "usageAggregator.pdb.enabled": (["usageAggregator.pdb.enabled=false"], [("PodDisruptionBudget", "usage-aggregator")]),
    "billing.enabled": (["billing.enabled=false"], [("CronJob", "billing-hourly"), ("CronJob", "billing-monthly"), ("ServiceAccount", "billing-engine-sa"), ("NetworkPolicy", "billing-engine")]),
    "dashboardApi.enabled": (["dashboardApi.enabled=false"], [("Deployment", "dashboard-api"), ("HorizontalPodAutoscaler", "dashboard-api"), ("ServiceAccount", "dashboard-api-sa"), ("Ingress", "dashboard-api")]),
    "dashboardApi.hpa.enabled": (["dashboardApi.hpa.enabled=false"], [("HorizontalPodAutoscaler", "dashboard-api")]),
    "dashboardApi.pdb.enabled": (["dashboardApi.pdb.enabled=false"], [("PodDisruptionBudget", "dashboard-api")]),
    "migrations.enabled": (["migrations.enabled=false"], [("Job", "tollgate-migrate"), ("ServiceAccount", "migrations-sa"), ("NetworkPolicy", "migrations")]),
    "rbac.create": (["rbac.create=false"], [("Role", "gateway"), ("RoleBinding", "gateway"), ("Role", "dashboard-api")]),
    "networkPolicy.enabled": (["networkPolicy.enabled=false"], [("NetworkPolicy", "default-deny"), ("NetworkPolicy", "gateway")]),
    "resourceQuota.enabled": (["resourceQuota.enabled=false"], [("ResourceQuota", "tollgate")]),
    "ingress.enabled": (["ingress.enabled=false"], [("Ingress", "gateway"), ("Ingress", "dashboard-api"), ("Ingress", "tollgate-monitoring"), ("ClusterIssuer", "letsencrypt-prod"), ("ConfigMap", "ingress-security-headers")]),
    "ingress.monitoring.enabled": (["ingress.monitoring.enabled=false"], [("Ingress", "tollgate-monitoring")]),
    "ingress.certManager.createIssuer": (["ingress.certManager.createIssuer=false"], [("ClusterIssuer", "letsencrypt-prod")]),
    "monitoring.serviceMonitors.enabled": (["monitoring.serviceMonitors.enabled=false"], [("ServiceMonitor", "gateway"), ("ServiceMonitor", "usage-aggregator"), ("ServiceMonitor", "dashboard-api")]),
    "monitoring.prometheusRules.enabled": (["monitoring.prometheusRules.enabled=false"], [("PrometheusRule", "tollgate")]),
    "monitoring.grafanaDashboards.enabled": (["monitoring.grafanaDashboards.enabled=false"], [("ConfigMap", "grafana-dashboard-gateway-performance"), ("ConfigMap", "grafana-dashboard-billing-revenue")]),
    "monitoring.prometheusAdapter.enabled": (["monitoring.prometheusAdapter.enabled=false"], [("ConfigMap", "tollgate-prometheus-adapter-rules")]),
    "tests.enabled": (["tests.enabled=false"], [("Pod", "tollgate-test-health"), ("NetworkPolicy", "tests")]),
}


def check_toggle(name, default_objects):
    sets, objects = TOGGLES[name]
    missing = [o for o in objects if o not in default_objects]
    if missing:
        raise CheckFailed(f"{name} on (default) does not render {missing}")
    off = kinds_names(render_docs([ci_file("default")], sets))
    still = [o for o in objects if o in off]
    if still:
        raise CheckFailed(f"{name} off still renders {still}")


def check_refused(sets, message, values_files=None):
    proc = helm_template(values_files or [ci_file("default")], sets, check=False)
    if proc.returncode == 0:
        raise CheckFailed(f"--set {sets} rendered; expected a failure saying {message!r}")
    if message not in proc.stderr:
        raise CheckFailed(f"--set {sets} failed without {message!r}:\n{proc.stderr}")


REFUSALS = {
    "unknown top-level key": (["bogus=1"], "additional properties 'bogus' not allowed"),
    "unknown key in gateway": (["gateway.bogus=1"], "additional properties 'bogus' not allowed"),
    "unknown key three levels down": (["gateway.usage.spool.bogus=1"], "additional properties 'bogus' not allowed"),
    "unknown key in a secret reference": (["secrets.database.password=hunter2"], "additional properties 'password' not allowed"),
    "missing database secret": (["secrets.database.existingSecret="], "secrets.database.existingSecret is required"),
    "missing redis secret": (["secrets.redis.existingSecret="], "secrets.redis.existingSecret is required"),
    "missing key pepper secret": (["secrets.keyPepper.existingSecret="], "secrets.keyPepper.existingSecret is required"),
    "missing JWT secret": (["secrets.jwtSecret.existingSecret="], "secrets.jwtSecret.existingSecret is required"),
    "missing billing secret": (["secrets.billing.existingSecret="], "secrets.billing.existingSecret is required"),
    "missing monitoring basic-auth secret": (["secrets.monitoringBasicAuth.existingSecret="], "secrets.monitoringBasicAuth.existingSecret is required"),
    "missing ACME email": (["ingress.certManager.acmeEmail="], "ingress.certManager.acmeEmail is required"),
    "termination grace not above the drain": (["gateway.terminationGracePeriodSeconds=25"], "must exceed gateway.graceSeconds + gateway.usage.flushSeconds"),
    "limiter replicas outside the HPA bounds": (["gateway.limiterReplicas=21"], "must lie within gateway.hpa.minReplicas..maxReplicas"),
    "spool volume not larger than the spool cap": (["gateway.usage.spool.size=1Gi"], "must be larger than gateway.usage.spool.maxBytes"),
    "bad compression": (["gateway.usage.compression=brotli"], "gateway/usage/compression"),
}
# Values files that must fail, rendered on top of ci/default-values.yaml, and their messages.
INVALID_FILES = {
    "unknown-key.yaml": "at '/gateway/hpa': additional properties 'minReplica' not allowed",
    "missing-secret.yaml": "secrets.jwtSecret.existingSecret is required",
}


def check_no_secret_objects_and_hardened_pods():
    problems = []
    for name in VALUES_FILES:
        docs = render_docs([ci_file(name)])
        for d in docs:
            if d["kind"] == "Secret":
                problems.append(f"{name}: the chart renders Secret {d['metadata']['name']}")
        for pod, spec in pod_specs(docs):
            psc = spec.get("securityContext", {})
            if psc.get("runAsNonRoot") is not True or psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{name}/{pod}: pod securityContext not non-root with RuntimeDefault seccomp")
            if spec.get("automountServiceAccountToken") is not False:
                problems.append(f"{name}/{pod}: service-account token mounted")
            for c in spec.get("initContainers", []) + spec["containers"]:
                sc = c.get("securityContext", {})
                if not (sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                        and sc.get("capabilities", {}).get("drop") == ["ALL"] and sc.get("runAsNonRoot") is True):
                    problems.append(f"{name}/{pod}/{c['name']}: container not hardened")
                res = c.get("resources", {})
                if not (res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory")
                        and res.get("limits", {}).get("cpu") and res.get("limits", {}).get("memory")):
                    problems.append(f"{name}/{pod}/{c['name']}: requests and limits incomplete (the ResourceQuota needs them)")
    if problems:
        raise CheckFailed("\n".join(problems))


def check_gateway_spool_and_grace():
    docs = render_docs([ci_file("default")])
    sts = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "gateway")
    spec = sts["spec"]
    claims = [c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])]
    if claims != ["usage-spool"]:
        raise CheckFailed(f"gateway volumeClaimTemplates {claims}, expected [usage-spool]")
    policy = spec.get("persistentVolumeClaimRetentionPolicy", {})
    if policy != {"whenDeleted": "Retain", "whenScaled": "Retain"}:
        raise CheckFailed(f"spool claims must be retained when scaled down or deleted: {policy}")
    pod = spec["template"]["spec"]
    if any(v["name"] == "usage-spool" for v in pod.get("volumes", [])):
        raise CheckFailed("usage-spool must come from the claim template, not a pod volume")
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gateway-config")["data"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "usage-spool")["mountPath"]
    if not config["TOLLGATE_USAGE_SPOOL_DIR"].startswith(mount + "/"):
        raise CheckFailed(f"spool dir {config['TOLLGATE_USAGE_SPOOL_DIR']} is not on the claim mounted at {mount}")
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler" and d["metadata"]["name"] == "gateway")["spec"]
    replicas = int(config["TOLLGATE_PROXY_REPLICAS"])
    if not hpa["minReplicas"] <= replicas <= hpa["maxReplicas"]:
        raise CheckFailed(f"TOLLGATE_PROXY_REPLICAS {replicas} outside {hpa['minReplicas']}..{hpa['maxReplicas']}")
    grace = int(config["TOLLGATE_PROXY_GRACE_SECONDS"]) + int(config["TOLLGATE_USAGE_FLUSH_SECONDS"])
    if pod["terminationGracePeriodSeconds"] <= grace:
        raise CheckFailed("terminationGracePeriodSeconds not above drain + flush")
    expected = {
        "minReplicas": 3, "maxReplicas": 20,
        "scaleUp": [{"type": "Percent", "value": 100, "periodSeconds": 30}, {"type": "Pods", "value": 4, "periodSeconds": 30}],
        "scaleDown": [{"type": "Percent", "value": 50, "periodSeconds": 60}, {"type": "Pods", "value": 2, "periodSeconds": 60}],
    }
    got = {"minReplicas": hpa["minReplicas"], "maxReplicas": hpa["maxReplicas"],
           "scaleUp": hpa["behavior"]["scaleUp"]["policies"], "scaleDown": hpa["behavior"]["scaleDown"]["policies"]}
    if got != expected or hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] != 300:
        raise CheckFailed(f"gateway HPA differs from the guide: {got}")


def check_wait_for_toggle():
    """The init containers that wait for PostgreSQL (and Redis, for the gateway) are there by
    default, on every workload, and gone with waitFor.enabled=false."""
    on = dict(pod_specs(render_docs([ci_file("default")])))
    want = {"gateway": ["wait-for-postgresql", "wait-for-redis"], "usage-aggregator": ["wait-for-postgresql"],
            "dashboard-api": ["wait-for-postgresql"], "billing-hourly": ["wait-for-postgresql"],
            "billing-monthly": ["wait-for-postgresql"], "tollgate-migrate": ["wait-for-postgresql"]}
    got = {name: [c["name"] for c in on[name].get("initContainers", [])] for name in want}
    if got != want:
        raise CheckFailed(f"init containers {got}, expected {want}")
    off = dict(pod_specs(render_docs([ci_file("default")], ["waitFor.enabled=false"])))
    left = [name for name, spec in off.items() if spec.get("initContainers")]
    if left:
        raise CheckFailed(f"waitFor.enabled=false still renders init containers in {left}")


def check_guide_numbers():
    """The deployment guide's numbers are the defaults: CronJobs, aggregator, dashboard HPA,
    gateway HPA resource targets, the four service accounts."""
    docs = render_docs([ci_file("default")])
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    problems = []
    for name, schedule, deadline, retries, kept in (("billing-hourly", "0 * * * *", 3600, 2, None),
                                                     ("billing-monthly", "0 0 1 * *", 10800, 3, 12)):
        cj = by[("CronJob", name)]["spec"]
        job = cj["jobTemplate"]["spec"]
        got = (cj["schedule"], cj["concurrencyPolicy"], job["activeDeadlineSeconds"], job["backoffLimit"])
        if got != (schedule, "Forbid", deadline, retries):
            problems.append(f"{name}: {got}")
        if kept and cj["successfulJobsHistoryLimit"] != kept:
            problems.append(f"{name}: keeps {cj['successfulJobsHistoryLimit']} runs, not {kept}")
    if by[("Deployment", "usage-aggregator")]["spec"]["replicas"] != 2:
        problems.append("usage aggregator replicas")
    for name, lo, hi, cpu, mem in (("dashboard-api", 2, 10, 70, 80), ("gateway", 3, 20, 60, 70)):
        h = by[("HorizontalPodAutoscaler", name)]["spec"]
        targets = {m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in h["metrics"] if m["type"] == "Resource"}
        if (h["minReplicas"], h["maxReplicas"], targets) != (lo, hi, {"cpu": cpu, "memory": mem}):
            problems.append(f"{name} HPA: {h['minReplicas']}-{h['maxReplicas']} {targets}")
    sas = {n for k, n in by if k == "ServiceAccount"} - {"migrations-sa"}
    if sas != {"gateway-sa", "usage-aggregator-sa", "billing-engine-sa", "dashboard-api-sa"}:
        problems.append(f"service accounts {sas}")
    if {n for k, n in by if k == "Namespace"} != {"saas-platform"}:
        problems.append("namespace")
    hosts = {r["host"] for k, n in by if k == "Ingress" for r in by[(k, n)]["spec"]["rules"]}
    if len(hosts) != 3:
        problems.append(f"ingress hosts {hosts}")
    if problems:
        raise CheckFailed("\n".join(problems))


def quantity(q):
    q = str(q)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for u, f in units.items():
        if q.endswith(u):
            return float(q[: -len(u)]) * f
    return float(q)


def check_quota_fits_maxima():
    """The ResourceQuota admits every workload at its HPA maximum plus one surge pod each,
    both CronJobs and the hooks at once, and the spool claims of the gateway at its maximum:
    a quota that blocks a scale-up is an outage."""
    problems = []
    for values in ("default", "production"):
        docs = render_docs([ci_file(values)])
        quota = next(d for d in docs if d["kind"] == "ResourceQuota")["spec"]["hard"]
        hpas = {d["spec"]["scaleTargetRef"]["name"]: d["spec"]["maxReplicas"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
        need = {"requests.cpu": 0.0, "requests.memory": 0.0, "limits.cpu": 0.0, "limits.memory": 0.0,
                "pods": 0, "persistentvolumeclaims": 0, "requests.storage": 0.0}
        for name, spec in pod_specs(docs):
            owner = next(d for d in docs if d["metadata"]["name"] == name and d["kind"] in ("Pod", "Deployment", "StatefulSet", "Job", "CronJob"))
            count = hpas.get(name) or owner["spec"].get("replicas", 1) if owner["kind"] in ("Deployment", "StatefulSet") else 1
            if owner["kind"] in ("Deployment", "StatefulSet"):
                # A claim per ordinal, kept when scaled down: at most maxReplicas of them.
                for claim in owner["spec"].get("volumeClaimTemplates", []):
                    need["persistentvolumeclaims"] += count
                    need["requests.storage"] += count * quantity(claim["spec"]["resources"]["requests"]["storage"])
                count += 1
            # Init containers run before the main ones: a pod is charged the larger of the two.
            for field in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    main = sum(quantity(c["resources"][field][res]) for c in spec["containers"])
                    init = max([quantity(c["resources"][field][res]) for c in spec.get("initContainers", [])] or [0])
                    need[f"{field}.{res}"] += count * max(main, init)
            need["pods"] += count
        short = {k: (v, quantity(quota[k])) for k, v in need.items() if v > quantity(quota[k])}
        if short:
            problems.append(f"{values}: ResourceQuota below the maxima (needed, quota): {short}")
    if problems:
        raise CheckFailed("\n".join(problems))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--update", action="store_true", help="rewrite golden renders and deploy/k8s")
    parser.add_argument("--exported", help="file of metric names scraped from the binaries")
    parser.add_argument("--only", default="", help="run the checks whose name contains this")
    args = parser.parse_args()

    checks = []
    for name in VALUES_FILES:
        checks.append((f"helm lint --strict ({name})", lambda n=name: check_lint(n)))
    for name in VALUES_FILES:
        for kube in KUBE_VERSIONS:
            checks.append((f"render {name} valid for Kubernetes {kube}", lambda n=name, k=kube: check_validate(n, k)))
    checks.append(("the oldest and newest Kubernetes the validator ships are the ones checked", check_newest_kubernetes_is_validated))
    for name in VALUES_FILES:
        checks.append((f"golden render {name}", lambda n=name: check_golden(n, args.update)))
    checks.append(("deploy/k8s matches a fresh render", lambda: check_plain_manifests(args.update)))
    default_objects = {}

    def toggle(name):
        if not default_objects:
            default_objects.update(dict.fromkeys(kinds_names(render_docs([ci_file("default")]))))
        check_toggle(name, default_objects)

    for name in TOGGLES:
        checks.append((f"toggle {name}", lambda n=name: toggle(n)))
    for fname, message in INVALID_FILES.items():
        checks.append((f"refused: ci/invalid/{fname}",
                       lambda f=fname, m=message: check_refused([], m, [ci_file("default"), CI / "invalid" / f])))
    for what, (sets, message) in REFUSALS.items():
        checks.append((f"refused: {what}", lambda s=sets, m=message: check_refused(s, m)))
    checks += [
        ("no Secret objects; pods non-root, read-only, no capabilities, RuntimeDefault", check_no_secret_objects_and_hardened_pods),
        ("gateway: spool claim per pod, retained; replicas and grace consistent; HPA as the guide", check_gateway_spool_and_grace),
        ("ResourceQuota admits every workload at its maximum", check_quota_fits_maxima),
        ("the guide's numbers are the defaults", check_guide_numbers),
        ("toggle waitFor.enabled (init containers waiting for PostgreSQL and Redis)", check_wait_for_toggle),
        ("promtool check rules and test rules", check_promtool_rules),
        ("every alert has a firing and a silent test case", check_alert_tests_cover_every_alert),
        ("dashboards are Grafana JSON whose queries parse", check_dashboards),
        ("adapter output names equal the HPA's metric names", check_adapter_names_match_hpa),
        ("every metric the monitoring uses is exported", lambda: check_metric_names_exported(args.exported)),
    ]
    if args.update:
        checks = [c for c in checks if c[0].startswith(("golden", "deploy/k8s"))]
    checks = [c for c in checks if args.only in c[0]]
    passed = failed = 0
    for name, fn in checks:
        try:
            fn()
            passed += 1
            print(f"chart check {name} ... ok", flush=True)
        except CheckFailed as e:
            failed += 1
            print(f"chart check {name} ... FAILED\n{e}", flush=True)
        except Exception:  # noqa: BLE001 - a crashing check is a failed check, and the rest still run
            failed += 1
            print(f"chart check {name} ... FAILED\n{traceback.format_exc()}", flush=True)
    status = "ok" if failed == 0 else "FAILED"
    print(f"test result: {status}. {passed} passed; {failed} failed; 0 ignored; 0 measured; 0 filtered out (chart checks)")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
