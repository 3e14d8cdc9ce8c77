"""deploy/kubernetes/ (docs/deployment.md "Kubernetes"): every overlay renders
offline with `kubectl kustomize`, and what it renders agrees with PAR itself.
The ConfigMap's par.yaml goes through `par config check` and `par config show`
(so a misspelt key fails here) with the container's environment and the
Secret mounts stood in for by files; the container port, the Service,
NetworkPolicy and ServiceMonitor ports, the probe paths (and that
authentication lets the kubelet reach them), the readiness period against
shutdown.grace_ms, terminationGracePeriodSeconds against preStop + grace +
drain, the state volume against state_dir, and the autoscalers' metric names
against a real /metrics scrape.

$PAR_KUBECTL_EXTRA may name more kubectl binaries (space-separated, e.g.
Debian 12's kubernetes-client 1.20, whose kustomize is v2.0.3): each must
render the same objects.
"""
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import PAR, SOURCE, package, run

KDIR = os.path.join(SOURCE, "deploy", "kubernetes")
OVERLAYS = ("single", "fleet-postgres", "fleet-postgres-keda")


def kubectls():
    found = [k for k in [shutil.which("kubectl")] if k]
    found += os.environ.get("PAR_KUBECTL_EXTRA", "").split()
    if not found:
        pytest.skip("no kubectl (scripts/install-deps.sh installs Debian's kubernetes-client)")
    return found


def render(kubectl, overlay):
    r = subprocess.run([kubectl, "kustomize", os.path.join(KDIR, "overlays", overlay)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (kubectl, overlay, r.stderr)
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def normalized(objs):
    """Objects keyed by kind/name, the generated ConfigMap hash, empty maps and
    list order (kustomize versions differ there) left out."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items() if x not in ({}, None)}
        if isinstance(v, list):
            return sorted((clean(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
        if isinstance(v, str):
            return re.sub(r"^par-config-[a-z0-9]+$", "par-config", v)
        return v
    return {(o["kind"], clean(o["metadata"]["name"])): clean(o) for o in objs}


def one(objs, kind):
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, (kind, [o["kind"] for o in objs])
    return found[0]


def show(path, env):
    r = subprocess.run([PAR, "config", "show", "--config", path], capture_output=True,
                       text=True, timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    vals = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^(\S+)\s+(.*?)\s+\(((?:default|file: |env: |flag: ).*)\)$", line)
        if m:
            vals[m.group(1)] = (m.group(2), m.group(3))
    return vals


def container_env(c, tmp):
    """The container's variables as the kubelet would set them: Secret values
    stood in for, $(VAR) expanded, fieldRefs given example values."""
    env = {"PATH": os.environ["PATH"]}
    fields = {"metadata.name": "par-7d9f-abcde", "status.podIP": "10.0.0.7"}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), ""),
                                    e["value"])
        elif "fieldRef" in e.get("valueFrom", {}):
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[e["name"]] = "secret-" + e["name"].lower()
    return env


def stand_in(text, mounts, tmp):
    """par.yaml with every absolute path under a volume mount moved under
    `tmp` (files under a Secret mount are made: minisign keys by par keygen)."""
    def move(m):
        path = m.group(0)
        for mount, vol in mounts.items():
            if path == mount or path.startswith(mount.rstrip("/") + "/"):
                local = os.path.join(tmp, path.lstrip("/"))
                if "secret" in vol and path != mount and not os.path.exists(local):
                    os.makedirs(os.path.dirname(local), exist_ok=True)
                    if local.endswith(".pub"):
                        r = run("keygen", "-p", local, "-s", local[:-4] + ".key", "--unencrypted")
                        assert r.returncode == 0 and os.path.exists(local), r.stderr
                    else:
                        open(local, "w").write("stand-in\n")
                return local
        return path
    return re.sub(r"(?<![\w.:/])/(?:var|etc|srv|data)(?:/[\w.@-]+)+", move, text)


@pytest.fixture(scope="module")
def metric_names(server_factory):
    s = server_factory([package("echo")])
    assert s.post("echo", {"x": 1}).status_code == 200
    text = s.get("/metrics").text
    return set(re.findall(r"^# TYPE (\w+) ", text, re.M))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_agrees_with_par(overlay, tmp_path, metric_names):
    tools = kubectls()
    objs = render(tools[0], overlay)
    for other in tools[1:]:  # an older kustomize renders the same objects
        assert normalized(render(other, overlay)) == normalized(objs), other

    dep = one(objs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}

    # the file the container reads is the ConfigMap's par.yaml
    assert c["args"] == ["serve", "--config", "/etc/par/par.yaml"]
    cm = one(objs, "ConfigMap")
    assert mounts["/etc/par/par.yaml"]["configMap"]["name"] == cm["metadata"]["name"]
    text = cm["data"]["par.yaml"]
    assert isinstance(yaml.safe_load(text), dict), text

    # through PAR: the file as the pod would see it
    local = tmp_path / "par.yaml"
    local.write_text(stand_in(text, mounts, str(tmp_path)))
    env = container_env(c, str(tmp_path))
    r = subprocess.run([PAR, "config", "check", str(local)], capture_output=True, text=True,
                       timeout=30, env=env)
    assert r.returncode == 0 and r.stdout.endswith(": ok\n"), (r.stdout, r.stderr,
                                                                local.read_text())
    vals = show(str(local), env)

    # ports: the listener, the container, the Service, the policy, the scrape
    port = int(vals["listen"][0].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": port}
    svc = one(objs, "Service")
    assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"]
    pol = one(objs, "NetworkPolicy")
    assert all(p["port"] in ("http", port) for rule in pol["spec"]["ingress"]
               for p in rule["ports"])
    mon = one(objs, "ServiceMonitor")
    svc_ports = [p["name"] for p in svc["spec"]["ports"]]
    assert [e["port"] for e in mon["spec"]["endpoints"]] == svc_ports
    assert mon["spec"]["endpoints"][0]["path"] == "/metrics"
    labels = pod.get("labels") or dep["spec"]["template"]["metadata"]["labels"]
    for sel in (svc["spec"]["selector"], mon["spec"]["selector"]["matchLabels"],
                one(objs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                pol["spec"]["podSelector"]["matchLabels"], dep["spec"]["selector"]["matchLabels"]):
        assert sel.items() <= labels.items(), (sel, labels)

    # probes: the paths PAR answers, reachable without a credential
    assert c["readinessProbe"]["httpGet"]["path"] == "/runtime/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/runtime/health"
    assert c["startupProbe"]["httpGet"]["path"] in ("/runtime/health", "/runtime/ready")
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in ("http", port)
    if vals["auth.mode"][0] != "off":
        open_paths = json.loads(vals["auth.open_paths"][0])
        for p in ("/runtime/ready", "/runtime/health", "/metrics"):
            assert p in open_paths, (p, open_paths)

    # shutdown: readiness notices within the grace, the kubelet waits out
    # preStop + grace + drain before SIGKILL
    grace, drain = int(vals["shutdown.grace_ms"][0]), int(vals["shutdown.drain_ms"][0])
    rp = c["readinessProbe"]
    assert (rp["periodSeconds"] * rp["failureThreshold"] + rp["timeoutSeconds"]) * 1000 <= grace
    pre = c["lifecycle"]["preStop"]["exec"]["command"]
    assert pre[0] == "/bin/sleep"
    budget = int(pre[1]) * 1000 + grace + drain
    assert pod["terminationGracePeriodSeconds"] * 1000 >= budget + 5000, (budget, pod)

    # state: PAR writes only under state_dir and /tmp, both volumes
    assert vals["state_dir"][0] == str(tmp_path / "var/lib/par")
    assert "/var/lib/par" in mounts and "/tmp" in mounts
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    dockerfile = open(os.path.join(SOURCE, "deploy", "container", "Dockerfile")).read()
    uid = re.search(r"^USER (\d+)", dockerfile, re.M).group(1)
    assert str(pod["securityContext"]["runAsUser"]) == uid

    if overlay == "single":
        claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
        assert one(objs, "PersistentVolumeClaim")["metadata"]["name"] == claim
        assert dep["spec"]["strategy"] == {"type": "Recreate"}
    else:
        assert dep["spec"]["replicas"] >= 2 and "emptyDir" in volumes["state"]
        raw = yaml.safe_load(cm["data"]["par.yaml"])
        assert raw["metering"]["sink"] == "postgres" and raw["metering"]["enabled"] is True
        assert raw["fleet"]["postgres"]
        # libpq's service file comes from the Secret par-postgres
        env_names = {e["name"]: e for e in c["env"]}
        svcfile = env_names["PGSERVICEFILE"]["value"]
        assert mounts[os.path.dirname(svcfile)]["secret"]["secretName"] == "par-postgres"
        # nodes reach each other's listener (runs forwarded to their owner)
        peers = [r for r in pol["spec"]["egress"]
                 if any(t.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()
                        for t in r.get("to", []))]
        assert any(p["port"] == port for r in peers for p in r["ports"]), pol["spec"]["egress"]
        assert env_names["PAR_FLEET_ADVERTISE_URL"]["value"].endswith(f":{port}")
        # the names PAR reads them under
        assert vals["metering.node_id"] == ("par-7d9f-abcde", "env: PAR_METERING_NODE_ID")
        assert vals["fleet.advertise_url"][1] == "env: PAR_FLEET_ADVERTISE_URL"

    # autoscaling on metrics PAR exports
    kinds = {o["kind"] for o in objs}
    if overlay == "fleet-postgres":
        hpa = one(objs, "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
        pods = [m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
        assert pods and set(pods) <= metric_names, pods
        assert "ScaledObject" not in kinds
    if overlay == "fleet-postgres-keda":
        so = one(objs, "ScaledObject")
        assert so["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
        used = set()
        for t in so["spec"]["triggers"]:
            if t["type"] == "prometheus":
                used |= set(re.findall(r"\bpar_\w+", t["metadata"]["query"]))
        assert used == {"par_invocations_in_flight", "par_runs_in_flight"}, used
        assert used <= metric_names, used - metric_names
        assert "HorizontalPodAutoscaler" not in kinds  # KEDA makes its own


def test_a_key_typo_fails(tmp_path):
    """The check above is not vacuous: the base's par.yaml with one key
    misspelt is refused by the same command."""
    text = open(os.path.join(KDIR, "base", "par.yaml")).read()
    bad = tmp_path / "par.yaml"
    bad.write_text(text.replace("grace_ms:", "grace_msec:"))
    r = run("config", "check", str(bad))
    assert r.returncode == 2 and "grace_msec" in r.stderr, r.stderr
