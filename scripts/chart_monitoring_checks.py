"""The chart checks of its monitoring: promtool on the alert rules, the Grafana dashboards,
the prometheus-adapter rules against the HPA, and the metric names all of them use against
what the binaries export. Part of scripts/chart_checks.py.
"""

import json
import re
import tempfile
from pathlib import Path

import yaml

from chart_render import CHART, PROMTOOL, ROOT, CheckFailed, ci_file, render_docs, run

# Metric names the monitoring uses that no Tollgate binary exports: they come from
# kube-state-metrics (the CronJobs' jobs) or Prometheus itself.
EXTERNAL_METRICS = {
    "kube_job_failed",
    "kube_cronjob_status_last_successful_time",
}
# Exported by work landing in parallel (not in the binaries this branch builds). The lead
# removes each name here as its branch merges; the check then holds it to the scrape.
# Names the monitoring uses before a binary exports them (none now: every name is held to a
# scrape or to its registration).
PENDING_METRICS: set[str] = set()


# Labelled families the binaries export only once they have a child (prometheus-client omits
# an empty family), which an idle binary in the check does not reach: events dropped at a full
# spool, records dead-lettered, consumer lag before the first statistics. Each is held to the
# source instead: the file must register it under that name.
EMPTY_UNTIL_USED = {
    "usage_events_dropped_total": ("proxy/src/usage/metrics.rs", "usage_events_dropped"),
    "metering_dead_lettered_total": ("metering/src/metrics.rs", "dead_lettered"),
    "metering_consumer_lag": ("metering/src/metrics.rs", "consumer_lag"),
    # The billing gauges are per status, currency and step: empty over the check's empty database.
    "billing_invoices": ("control-api/src/billing_metrics.rs", "billing_invoices"),
    "billing_invoiced_amount_minor": ("control-api/src/billing_metrics.rs", "billing_invoiced_amount_minor"),
    "billing_mrr_minor": ("control-api/src/billing_metrics.rs", "billing_mrr_minor"),
    "billing_invoice_steps_failed": ("control-api/src/billing_metrics.rs", "billing_invoice_steps_failed"),
}



def prometheus_rule_groups(docs):
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def check_promtool_rules():
    docs = render_docs([ci_file("default")])
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "tollgate-alerts.yaml"
        rules.write_text(yaml.safe_dump(prometheus_rule_groups(docs), sort_keys=False))
        run([PROMTOOL, "check", "rules", rules])
        tests = Path(tmp) / "alerts.test.yaml"
        tests.write_text((CHART / "tests/alerts.test.yaml").read_text())
        proc = run([PROMTOOL, "test", "rules", tests], check=False)
        if proc.returncode != 0:
            raise CheckFailed(proc.stdout + proc.stderr)


def check_alert_tests_cover_every_alert():
    docs = render_docs([ci_file("default")])
    alerts = {r["alert"] for g in prometheus_rule_groups(docs)["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((CHART / "tests/alerts.test.yaml").read_text())
    fired, silent = set(), set()
    for t in tests["tests"]:
        for case in t.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    problems = [f"{a}: no case that fires" for a in sorted(alerts - fired)]
    problems += [f"{a}: no case that stays silent" for a in sorted(alerts - silent)]
    if problems:
        raise CheckFailed("\n".join(problems))


GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$namespace": "saas-platform"}


def dashboard_queries():
    for path in sorted((CHART / "files/dashboards").glob("*.json")):
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                yield path.name, panel["title"], target["expr"]


def check_dashboards():
    problems = []
    titles = set()
    for path in sorted((CHART / "files/dashboards").glob("*.json")):
        try:
            dash = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{path.name}: not JSON: {e}")
            continue
        for key in ("uid", "title", "schemaVersion", "panels", "templating", "time"):
            if key not in dash:
                problems.append(f"{path.name}: no {key}")
        titles.add(dash.get("title"))
        ids = [p.get("id") for p in dash.get("panels", [])]
        if len(ids) != len(set(ids)) or None in ids:
            problems.append(f"{path.name}: panel ids missing or repeated")
        variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
        for p in dash.get("panels", []):
            if p.get("type") not in ("timeseries", "stat", "gauge", "table", "bargauge", "text"):
                problems.append(f"{path.name}/{p.get('title')}: unknown panel type {p.get('type')}")
            g = p.get("gridPos", {})
            if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] + g["w"] > 24:
                problems.append(f"{path.name}/{p.get('title')}: bad gridPos {g}")
            if not p.get("targets"):
                problems.append(f"{path.name}/{p.get('title')}: no query")
            refs = [t.get("refId") for t in p.get("targets", [])]
            if len(refs) != len(set(refs)) or None in refs:
                problems.append(f"{path.name}/{p.get('title')}: refIds missing or repeated")
            for t in p.get("targets", []):
                for var in re.findall(r"\$\{?(\w+)", t.get("expr", "")):
                    if var not in variables and not var.startswith("__"):
                        problems.append(f"{path.name}/{p.get('title')}: undefined variable ${var}")
    if titles != {"Tollgate / Gateway Performance", "Tollgate / Billing Revenue"}:
        problems.append(f"dashboards {titles}")
    # Each query parses: promtool checks it as a recording rule, Grafana's variables filled in.
    rules = []
    for i, (fname, title, expr) in enumerate(dashboard_queries()):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "dashboard-queries.yaml"
        f.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
        proc = run([PROMTOOL, "check", "rules", f], check=False)
        if proc.returncode != 0:
            problems.append(proc.stdout + proc.stderr)
    if problems:
        raise CheckFailed("\n".join(problems))


def adapter_rules():
    return yaml.safe_load((CHART / "files/prometheus-adapter-rules.yaml").read_text())["rules"]


def check_adapter_names_match_hpa():
    produced = set()
    for rule in adapter_rules():
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"]).group(0)
        produced.add(re.sub(rule["name"]["matches"], rule["name"]["as"], series))
    docs = render_docs([ci_file("default")])
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler" and d["metadata"]["name"] == "gateway")
    wanted = {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}
    if wanted != {"gateway_request_duration_ms", "gateway_requests_per_second", "gateway_concurrent_requests"}:
        raise CheckFailed(f"the HPA's custom metrics are {wanted}")
    if produced != wanted:
        raise CheckFailed(f"the adapter produces {sorted(produced)}, the HPA asks for {sorted(wanted)}")
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "tollgate-prometheus-adapter-rules")
    if yaml.safe_load(cm["data"]["config.yaml"])["rules"] != adapter_rules():
        raise CheckFailed("the adapter ConfigMap does not carry files/prometheus-adapter-rules.yaml")


PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "inf", "nan", "le", "atan2",
}


def promql_metric_names(expr):
    """The metric names a PromQL expression selects: identifiers outside strings, label
    matchers, ranges and grouping clauses that are not function calls or keywords."""
    expr = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"<<\.\w+>>", "", expr)
    names = set()
    for m in re.finditer(r"(?<![\w.$])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", expr):
        word, call = m.group(1), m.group(2)
        if call or word in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def used_metric_names():
    used = {}
    docs = render_docs([ci_file("default")])
    for g in prometheus_rule_groups(docs)["groups"]:
        for r in g["rules"]:
            for n in promql_metric_names(r["expr"]):
                used.setdefault(n, set()).add(f"alert {r.get('alert', r.get('record'))}")
    for fname, title, expr in dashboard_queries():
        for n in promql_metric_names(expr):
            used.setdefault(n, set()).add(f"dashboard {fname}: {title}")
    for rule in adapter_rules():
        for n in promql_metric_names(rule["seriesQuery"]):
            used.setdefault(n, set()).add("prometheus-adapter rule")
    return used


def check_metric_names_exported(exported_file):
    if not exported_file or not Path(exported_file).exists():
        raise CheckFailed("no scraped metric names (scripts/chart-checks.sh scrapes the binaries first)")
    exported = set(Path(exported_file).read_text().split())
    for name, (source, registered) in EMPTY_UNTIL_USED.items():
        if name in exported:
            continue
        text = (ROOT / source).read_text()
        if f'"{registered}"' not in text or "registry.register(" not in text:
            raise CheckFailed(f"{name}: neither scraped nor registered as \"{registered}\" in {source}")
        exported.add(name)
    used = used_metric_names()
    unknown = {n: sorted(w) for n, w in used.items() if n not in exported and n not in EXTERNAL_METRICS and n not in PENDING_METRICS}
    if unknown:
        raise CheckFailed("used but exported by no binary:\n" + "\n".join(f"  {n}: {w}" for n, w in sorted(unknown.items())))
    landed = sorted(PENDING_METRICS & exported)
    if landed:
        print(f"    note: pending names now exported (remove them from PENDING_METRICS): {landed}")
    if not {"gateway_requests_total", "metering_consumer_lag", "usage_spool_bytes"} <= set(used):
        raise CheckFailed("the name extraction found too little; it is broken")
