#!/usr/bin/env python3
"""Writes monitoring/grafana-dashboard.json, the tortie Grafana dashboard.

Edit this file, not the JSON: `python3 monitoring/make-dashboard.py`.
Rows: overview, BGP sessions, routes, dataplane, IPAM, process — the layout
operators know from the FRR exporter and Calico Felix dashboards.
"""
import json
import os

DS = {"type": "prometheus", "uid": "${datasource}"}
NODE = 'instance=~"$node"'
panels = []
y = 0
next_id = 1


def add(panel, w, h):
    global y, next_id, x
    if x + w > 24:
        x = 0
        y += row_h[0]
        row_h[0] = 0
    panel.update({"id": next_id, "gridPos": {"x": x, "y": y, "w": w, "h": h}, "datasource": DS})
    next_id += 1
    x += w
    row_h[0] = max(row_h[0], h)
    panels.append(panel)


def row(title):
    global y, x, next_id
    if x:
        y += row_h[0]
    x = 0
    row_h[0] = 0
    panels.append({"type": "row", "title": title, "id": next_id, "collapsed": False,
                   "gridPos": {"x": 0, "y": y, "w": 24, "h": 1}, "panels": []})
    next_id += 1
    y += 1


def target(expr, legend="", instant=False, fmt=None, ref="A"):
    t = {"expr": expr, "legendFormat": legend, "refId": ref, "datasource": DS}
    if instant:
        t["instant"] = True
        t["range"] = False
    if fmt:
        t["format"] = fmt
    return t


def stat(title, expr, unit="none", w=4):
    add({"type": "stat", "title": title, "targets": [target(expr)],
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
         "options": {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}}, w, 4)


def ts(title, targets, unit="none", w=12, negative=None):
    overrides = []
    if negative:
        overrides.append({"matcher": {"id": "byRegexp", "options": negative},
                          "properties": [{"id": "custom.transform", "value": "negative-Y"}]})
    add({"type": "timeseries", "title": title, "targets": targets,
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": overrides}}, w, 8)


x = 0
row_h = [0]

row("Overview")
stat("Agents up", "count(tortie_build_info)")
stat("Sessions established", "sum(tortie_bgp_session_up)")
stat("Sessions configured", "count(tortie_bgp_session_up)")
stat("Nodes without an established peer",
     "count((sum by (instance) (tortie_bgp_session_up)) == 0) or vector(0)")
stat("IPAM utilisation", "max(max by (pool) (tortie_ipam_allocations_in_use) / max by (pool) (tortie_ipam_pool_size))",
     unit="percentunit")
stat("Dataplane failures (1h)", "sum(increase(tortie_dataplane_failures_total[1h]))")

row("BGP sessions")
add({"type": "state-timeline", "title": "Session state per peer",
     "targets": [target(f"tortie_bgp_session_up{{{NODE}}}", "{{instance}} → {{peer}}")],
     "fieldConfig": {"defaults": {"mappings": [{"type": "value", "options": {
         "0": {"text": "down", "color": "red"}, "1": {"text": "established", "color": "green"}}}]},
         "overrides": []}}, 24, 8)
add({"type": "table", "title": "Sessions",
     "targets": [
         target(f"tortie_bgp_session_up{{{NODE}}}", instant=True, fmt="table", ref="A"),
         target(f"sum by (instance, peer) (tortie_bgp_routes_received{{{NODE}}})", instant=True, fmt="table", ref="B"),
         target(f"sum by (instance, peer) (tortie_bgp_routes_accepted{{{NODE}}})", instant=True, fmt="table", ref="C"),
         target(f"sum by (instance, peer) (tortie_bgp_routes_advertised{{{NODE}}})", instant=True, fmt="table", ref="D"),
         target(f"time() - (tortie_bgp_session_established_timestamp_seconds{{{NODE}}} > 0)", instant=True,
                fmt="table", ref="E"),
     ],
     "transformations": [{"id": "merge", "options": {}},
                         {"id": "organize", "options": {"excludeByName": {"Time": True, "__name__": True},
                                                        "renameByName": {"Value #A": "up", "Value #B": "received",
                                                                         "Value #C": "accepted",
                                                                         "Value #D": "advertised",
                                                                         "Value #E": "uptime (s)"}}}]}, 24, 8)
ts("Flaps per hour", [target(f"increase(tortie_bgp_session_flaps_total{{{NODE}}}[1h])", "{{instance}} → {{peer}}")])
ts("NOTIFICATIONs by code",
   [target(f"sum by (direction, code, subcode) (increase(tortie_bgp_notifications_total{{{NODE}}}[$__rate_interval]))",
           "{{direction}} {{code}}/{{subcode}}")])

row("Routes")
ts("Prefixes received / advertised",
   [target(f"sum by (instance, peer) (tortie_bgp_routes_received{{{NODE}}})", "received {{instance}} ← {{peer}}", ref="A"),
    target(f"sum by (instance, peer) (tortie_bgp_routes_advertised{{{NODE}}})", "advertised {{instance}} → {{peer}}",
           ref="B")], negative="advertised.*")
ts("UPDATE rates",
   [target(f"sum by (instance) (rate(tortie_bgp_updates_received_total{{{NODE}}}[$__rate_interval]))",
           "announced {{instance}}", ref="A"),
    target(f"sum by (instance) (rate(tortie_bgp_withdraws_received_total{{{NODE}}}[$__rate_interval]))",
           "withdrawn {{instance}}", ref="B"),
    target(f"sum by (instance) (rate(tortie_bgp_messages_sent_total{{{NODE},message_type=\"update\"}}[$__rate_interval]))",
           "sent {{instance}}", ref="C")], unit="ops", negative="sent.*")
ts("Loc-RIB size", [target(f"tortie_bgp_rib_routes{{{NODE}}}", "{{instance}} {{afi}} {{table}}")])
ts("RFC 7606 events",
   [target(f"sum by (instance) (increase(tortie_bgp_rfc7606_treat_as_withdraw_total{{{NODE}}}[$__rate_interval]))",
           "treat-as-withdraw {{instance}}", ref="A"),
    target(f"sum by (instance) (increase(tortie_bgp_rfc7606_attribute_discard_total{{{NODE}}}[$__rate_interval]))",
           "attribute discard {{instance}}", ref="B")])

row("Dataplane")
ts("Route programming latency (BGP → kernel)",
   [target(f"histogram_quantile(0.5, sum by (le) (rate(tortie_route_programming_latency_seconds_bucket{{{NODE}}}[$__rate_interval])))",
           "p50", ref="A"),
    target(f"histogram_quantile(0.99, sum by (le) (rate(tortie_route_programming_latency_seconds_bucket{{{NODE}}}[$__rate_interval])))",
           "p99", ref="B")], unit="s")
ts("Routes by kind", [target(f"sum by (kind) (tortie_dataplane_routes{{{NODE}}})", "{{kind}}")])
ts("Reconcile duration",
   [target(f"histogram_quantile(0.99, sum by (le) (rate(tortie_dataplane_resync_duration_seconds_bucket{{{NODE}}}[$__rate_interval])))",
           "p99")], unit="s")
ts("Failures and drift repairs",
   [target(f"sum by (op) (rate(tortie_dataplane_failures_total{{{NODE}}}[$__rate_interval]))", "failed {{op}}", ref="A"),
    target(f"sum(rate(tortie_dataplane_drift_repairs_total{{{NODE}}}[$__rate_interval]))", "drift repaired", ref="B")],
   unit="ops")
ts("Path to nodes (1 = encapsulated)",
   [target(f"tortie_dataplane_node_path{{{NODE},path!=\"direct\"}}", "{{instance}} → {{node}} ({{path}})")])
ts("Userspace tunnel traffic",
   [target(f"sum by (direction) (rate(tortie_ipip_bytes_total{{{NODE}}}[$__rate_interval]))", "{{direction}}", ref="A"),
    target(f"sum by (reason) (rate(tortie_ipip_dropped_packets_total{{{NODE}}}[$__rate_interval]))", "dropped {{reason}}",
           ref="B")], unit="Bps")

row("IPAM")
ts("Pool utilisation",
   [target("max by (pool) (tortie_ipam_allocations_in_use) / max by (pool) (tortie_ipam_pool_size)", "{{pool}}")],
   unit="percentunit", w=8)
ts("Blocks and borrowed addresses",
   [target("max by (pool) (tortie_ipam_blocks)", "blocks {{pool}}", ref="A"),
    target("max by (pool) (tortie_ipam_allocations_borrowed)", "borrowed {{pool}}", ref="B")], w=8)
ts("Allocation latency and errors",
   [target(f"histogram_quantile(0.99, sum by (le) (rate(tortie_ipam_allocation_duration_seconds_bucket{{{NODE}}}[$__rate_interval])))",
           "p99 latency", ref="A"),
    target(f"sum by (reason) (rate(tortie_ipam_allocation_errors_total{{{NODE}}}[$__rate_interval]))", "errors {{reason}}",
           ref="B"),
    target(f"sum(rate(tortie_ipam_gc_reclamations_total{{{NODE}}}[$__rate_interval]))", "GC reclaimed", ref="C")], w=8)

row("Process")
ts("Resident memory", [target(f"process_resident_memory_bytes{{job=~\"$job\",{NODE}}}", "{{instance}}")], unit="bytes", w=8)
ts("CPU", [target(f"rate(process_cpu_seconds_total{{job=~\"$job\",{NODE}}}[$__rate_interval])", "{{instance}}")],
   unit="percentunit", w=8)
ts("Restarts per hour", [target(f"changes(process_start_time_seconds{{job=~\"$job\",{NODE}}}[1h])", "{{instance}}")], w=8)

dashboard = {
    "title": "tortie",
    "uid": "tortie-node",
    "description": "tortie node agents: BGP sessions, routes, dataplane, IPAM",
    "tags": ["tortie", "bgp", "kubernetes"],
    "schemaVersion": 39,
    "version": 1,
    "editable": True,
    "time": {"from": "now-6h", "to": "now"},
    "refresh": "30s",
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
        {"name": "job", "type": "query", "datasource": DS, "query": "label_values(tortie_build_info, job)",
         "includeAll": True, "multi": True, "refresh": 2},
        {"name": "node", "type": "query", "datasource": DS,
         "query": "label_values(tortie_build_info{job=~\"$job\"}, instance)", "includeAll": True, "multi": True,
         "refresh": 2},
    ]},
    "panels": panels,
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "grafana-dashboard.json")
with open(out, "w") as f:
    json.dump(dashboard, f, indent=2)
    f.write("\n")
