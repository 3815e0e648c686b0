#!/usr/bin/env python3
"""deploy/k8s/render.py -- prints the Kubernetes manifests of a pstrain job (stdlib only).

    python3 deploy/k8s/render.py --servers S --workers W --image IMAGE --job JOB.yaml \
        [--name pstrain] [--storage 10Gi] [--max-restarts R] [--jobset] \
        [--curve-secret SECRET] | kubectl apply -f -

Plain Kubernetes (default): a ConfigMap holding the job file, a headless Service, a
PersistentVolumeClaim for the run's output and checkpoints, and three Indexed Jobs --
coordinator (1 pod), servers (S), workers (W). Pods are named by DNS as
<job>-<index>.<service> (hostname + subdomain), and every pod learns its rank from
JOB_COMPLETION_INDEX. With --jobset, the three Jobs become the replicatedJobs of one
JobSet (jobset.x-k8s.io/v1alpha2), which makes the Service itself, starts the roles in
order and restarts the whole job on a retriable failure.

With --curve-secret, every connection is encrypted and authenticated with CURVE
(docs/security.md). SECRET is a Secret you create from `pstrain keygen --out keys server
worker` (the manifests never carry key material):
    kubectl create secret generic SECRET --from-file=keys/server.key \
        --from-file=keys/server.pub --from-file=keys/worker.key --from-file=keys/worker.pub
Each role mounts only what it needs at /etc/pstrain-keys: the coordinator and servers the
server key pair and the allow-list (server.pub, worker.pub), workers server.pub and
worker.key; the PSTRAIN_SERVER_KEY/... variables point pstrain at them.

Exit codes (README "Exit codes"): 1, 2, 3, 5 are permanent (failed run, bad job file, bad
data, stopped as diverged): FailJob. 75 (timeout, lost peer) and 4 (I/O) count against backoffLimit and are
retried; pods evicted or preempted (DisruptionTarget) are retried without counting.

Workers restart as under `pstrain local` (cluster.max_restarts, R: the job file's value or
--max-restarts): a worker pod that exits 75 or is killed by a signal is replaced (same
index, so the same rank; it rejoins) up to R times, then the job goes on without that rank;
1, 2, 3, 4 and 5 are permanent for a worker. Plain Jobs give each rank its own budget
(backoffLimitPerIndex R; backoffLimit W * (R + 1), the sum of those, never reached first);
in a JobSet the workers' Job has backoffLimit W * R, and exhausting it restarts the JobSet.
"""
import re
import argparse
import sys

COORD_PORT = 7070
SERVER_PORT = 7071
JOB_DIR = "/etc/pstrain"
DATA_DIR = "/data"
KEY_DIR = "/etc/pstrain-keys"
# Secret items each role mounts (key in the Secret, path under KEY_DIR), and the
# security.* settings that name them ("" unsets what the job file may say).
CURVE_ITEMS = {
    "coordinator": [("server.key", "server.key"), ("server.pub", "allow/server.pub"),
                    ("worker.pub", "allow/worker.pub")],
    "server": [("server.key", "server.key"), ("server.pub", "server.pub"),
               ("server.pub", "allow/server.pub"), ("worker.pub", "allow/worker.pub")],
    "worker": [("server.pub", "server.pub"), ("worker.key", "worker.key")],
}
CURVE_ENV = {
    "coordinator": {"PSTRAIN_SERVER_KEY": f"{KEY_DIR}/server.key", "PSTRAIN_ALLOW": f"{KEY_DIR}/allow",
                    "PSTRAIN_SERVER_PUBLIC": "", "PSTRAIN_CLIENT_KEY": ""},
    # A server's client key (to the coordinator) is its server key: PSTRAIN_CLIENT_KEY "".
    "server": {"PSTRAIN_SERVER_KEY": f"{KEY_DIR}/server.key", "PSTRAIN_ALLOW": f"{KEY_DIR}/allow",
               "PSTRAIN_SERVER_PUBLIC": f"{KEY_DIR}/server.pub", "PSTRAIN_CLIENT_KEY": ""},
    "worker": {"PSTRAIN_SERVER_KEY": "", "PSTRAIN_ALLOW": "",
               "PSTRAIN_SERVER_PUBLIC": f"{KEY_DIR}/server.pub",
               "PSTRAIN_CLIENT_KEY": f"{KEY_DIR}/worker.key"},
}
INDEX_ANNOTATION = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


def scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    # Quote everything that is not a plain identifier-like word, so YAML never retypes it.
    if s and all(c.isalnum() or c in "-_./" for c in s) and not s[0].isdigit() and \
            s.lower() not in ("true", "false", "yes", "no", "on", "off", "null", "~"):
        return s
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def emit(v, indent=0):
    """Block-style YAML for dicts, lists, scalars; multi-line strings as literal blocks."""
    pad = " " * indent
    out = []
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, str) and "\n" in x:
                out.append(f"{pad}{k}: |")
                out.extend((pad + "  " + line).rstrip() for line in x.rstrip("\n").split("\n"))
            elif isinstance(x, (dict, list)) and x:
                out.append(f"{pad}{k}:")
                out.extend(emit(x, indent + 2))
            elif isinstance(x, dict):
                out.append(f"{pad}{k}: {{}}")
            elif isinstance(x, list):
                out.append(f"{pad}{k}: []")
            else:
                out.append(f"{pad}{k}: {scalar(x)}")
    else:
        for x in v:
            if isinstance(x, (dict, list)) and x:
                sub = emit(x, indent + 2)
                out.append(pad + "- " + sub[0][indent + 2:])
                out.extend(sub[1:])
            else:
                out.append(f"{pad}- {scalar(x)}")
    return out


def env(name, value):
    return {"name": name, "value": str(value)}


def pod_template(a, role, coordinator, advertise_host):
    """The pod of one role. advertise_host: servers' DNS name with $(POD_INDEX)."""
    envs = [env("PSTRAIN_NUM_SERVERS", a.servers), env("PSTRAIN_NUM_WORKERS", a.workers)]
    ports, probe = [], None
    if role == "coordinator":
        envs.append(env("PSTRAIN_BIND", f"tcp://0.0.0.0:{COORD_PORT}"))
        ports = [{"name": "coordinator", "containerPort": COORD_PORT}]
        probe = COORD_PORT
    else:
        envs.append(env("PSTRAIN_COORDINATOR", coordinator))
    if role == "server":
        envs += [{"name": "POD_INDEX", "valueFrom": {"fieldRef": {"fieldPath": INDEX_ANNOTATION}}},
                 env("PSTRAIN_BIND", "0.0.0.0"), env("PSTRAIN_PORT", SERVER_PORT),
                 env("PSTRAIN_ADVERTISE", advertise_host)]
        ports = [{"name": "server", "containerPort": SERVER_PORT}]
        probe = SERVER_PORT
    container = {
        "name": "pstrain",
        "image": a.image,
        "args": [role, f"{JOB_DIR}/job.yaml", "--output", f"{DATA_DIR}/{a.name}"],
        "env": envs,
        "volumeMounts": [{"name": "job", "mountPath": JOB_DIR, "readOnly": True},
                         {"name": "data", "mountPath": DATA_DIR}],
    }
    if a.curve_secret:
        envs += [env(k, v) for k, v in CURVE_ENV[role].items()]
        container["volumeMounts"].append({"name": "curve-keys", "mountPath": KEY_DIR,
                                          "readOnly": True})
    if ports:
        container["ports"] = ports
        container["readinessProbe"] = {"tcpSocket": {"port": probe},
                                       "periodSeconds": 2, "failureThreshold": 3}
    spec = {
        "restartPolicy": "Never",
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
        "containers": [container],
        "volumes": [{"name": "job", "configMap": {"name": f"{a.name}-job"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": f"{a.name}-data"}}],
    }
    if a.curve_secret:
        # 0440: readable by the pod's fsGroup (the non-root user), by no one else.
        spec["volumes"].append({"name": "curve-keys", "secret": {
            "secretName": a.curve_secret, "defaultMode": 0o440,
            "items": [{"key": k, "path": p} for k, p in CURVE_ITEMS[role]]}})
    if not a.jobset:
        spec["subdomain"] = a.name
    labels = {"app.kubernetes.io/name": "pstrain", "app.kubernetes.io/instance": a.name,
              "app.kubernetes.io/component": role}
    return {"metadata": {"labels": labels}, "spec": spec}


def failure_policy(permanent, counted):
    """FailJob on the permanent exit codes, Count the retried ones (other codes -- signals,
    128 + SIG -- count by default); evictions and preemptions never count."""
    return {"rules": [
        {"action": "FailJob",
         "onExitCodes": {"containerName": "pstrain", "operator": "In", "values": permanent}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "Count",
         "onExitCodes": {"containerName": "pstrain", "operator": "In", "values": counted}},
    ]}


FAILURE_POLICY = failure_policy([1, 2, 3, 5], [4, 75])


# A worker's I/O error (4) is permanent, as `pstrain local` and pstrain-cluster treat it.
WORKER_FAILURE_POLICY = failure_policy([1, 2, 3, 4, 5], [75])


def job_spec(a, role, count, coordinator, advertise_host):
    spec = {"completionMode": "Indexed", "completions": count, "parallelism": count,
            "backoffLimit": 3, "podFailurePolicy": FAILURE_POLICY,
            "template": pod_template(a, role, coordinator, advertise_host)}
    if role == "worker":
        spec["podFailurePolicy"] = WORKER_FAILURE_POLICY
        if a.jobset:
            # A Job with a failed index ends Failed, which a JobSet answers by restarting
            # everything, even after training finished: one budget for the Job instead.
            spec["backoffLimit"] = count * a.max_restarts
        else:
            # Each rank its own budget; a rank that spends it fails alone and the job goes
            # on without it (the coordinator drops it). backoffLimit, which counts every
            # rank's failures, is the sum of those budgets so that it never fires first.
            spec["backoffLimit"] = count * (a.max_restarts + 1)
            spec = {k: v for k, v in spec.items() if k != "template"}
            spec["backoffLimitPerIndex"] = a.max_restarts
            spec["template"] = pod_template(a, role, coordinator, advertise_host)
    return spec


def job_max_restarts(job_text):
    """cluster.max_restarts of a job file: the key of its top-level block-style `cluster:`
    mapping, 0 when absent (stdlib only: no YAML parser)."""
    in_cluster = False
    for line in job_text.splitlines():
        if line[:1] not in ("", " ", "\t", "#"):
            in_cluster = line.split("#")[0].strip() == "cluster:"
        m = re.match(r"\s+max_restarts:\s*([0-9]+)\s*(#.*)?$", line)
        if in_cluster and m:
            return int(m.group(1))
    return 0


def render(a, job_text):
    meta = lambda name: {"name": name, "labels": {"app.kubernetes.io/name": "pstrain",
                                                 "app.kubernetes.io/instance": a.name}}
    docs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(f"{a.name}-job"),
         "data": {"job.yaml": job_text}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta(f"{a.name}-data"),
         "spec": {"accessModes": ["ReadWriteMany"],
                  "resources": {"requests": {"storage": a.storage}}}},
    ]
    counts = {"coordinator": 1, "server": a.servers, "worker": a.workers}
    if a.jobset:
        # JobSet pods are <jobset>-<replicatedJob>-<job index>-<pod index>.<subdomain>.
        host = lambda role, idx: f"{a.name}-{role}-0-{idx}.{a.name}"
        coordinator = f"tcp://{host('coordinator', 0)}:{COORD_PORT}"
        rjobs = [{"name": role, "replicas": 1,
                  "template": {"spec": job_spec(a, role, n, coordinator,
                                                host("server", "$(POD_INDEX)"))}}
                 for role, n in counts.items()]
        docs.append({"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
                     "metadata": meta(a.name),
                     "spec": {"network": {"enableDNSHostnames": True, "subdomain": a.name},
                              "startupPolicy": {"startupPolicyOrder": "InOrder"},
                              "failurePolicy": {"maxRestarts": 3, "rules": [
                                  {"action": "FailJobSet",
                                   "onJobFailureReasons": ["PodFailurePolicy"]}]},
                              "replicatedJobs": rjobs}})
    else:
        host = lambda role, idx: f"{a.name}-{role}-{idx}.{a.name}"
        coordinator = f"tcp://{host('coordinator', 0)}:{COORD_PORT}"
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": meta(a.name),
                     "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                              "selector": {"app.kubernetes.io/instance": a.name},
                              "ports": [{"name": "coordinator", "port": COORD_PORT},
                                        {"name": "server", "port": SERVER_PORT}]}})
        for role, n in counts.items():
            docs.append({"apiVersion": "batch/v1", "kind": "Job",
                         "metadata": meta(f"{a.name}-{role}"),
                         "spec": job_spec(a, role, n, coordinator,
                                          host("server", "$(POD_INDEX)"))})
    return "".join("---\n" + "\n".join(emit(d)) + "\n" for d in docs)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--servers", type=int, required=True)
    p.add_argument("--workers", type=int, required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--job", required=True, help="the job file (goes into the ConfigMap)")
    p.add_argument("--name", default="pstrain", help="prefix of every object (DNS label)")
    p.add_argument("--storage", default="10Gi", help="size of the output/checkpoint volume")
    p.add_argument("--max-restarts", type=int, default=None,
                   help="restarts per worker (default: cluster.max_restarts of the job file)")
    p.add_argument("--jobset", action="store_true", help="one JobSet instead of three Jobs")
    p.add_argument("--curve-secret", metavar="SECRET",
                   help="encrypt and authenticate with the CURVE keys in this Secret")
    a = p.parse_args(argv)
    if a.servers < 1 or a.workers < 1:
        p.error("--servers and --workers must be at least 1")
    if not a.name.replace("-", "").isalnum() or not a.name[0].isalpha() or len(a.name) > 40:
        p.error("--name must be a short DNS label (letters, digits, '-')")
    if a.curve_secret is not None and not (
            a.curve_secret and a.curve_secret.replace("-", "").replace(".", "").isalnum()
            and a.curve_secret[0].isalnum() and len(a.curve_secret) <= 253):
        p.error("--curve-secret must be a Secret name (letters, digits, '-', '.')")
    try:
        with open(a.job) as f:
            job_text = f.read()
    except OSError as e:
        p.error(f"--job: {e}")
    if a.max_restarts is None:
        a.max_restarts = job_max_restarts(job_text)
    if not 0 <= a.max_restarts <= 1000:
        p.error("--max-restarts must be in [0, 1000] (cluster.max_restarts)")
    sys.stdout.write(render(a, job_text))


if __name__ == "__main__":
    main(sys.argv[1:])
