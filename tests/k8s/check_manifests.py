#!/usr/bin/env python3
"""tests/k8s/check_manifests.py MANIFESTS.yaml PSTRAIN JOB.yaml S W IMAGE

Checks rendered manifests (deploy/k8s/render.py) without a cluster:
1. schema: the core objects are validate_upstream.mjs's (the upstream schemas); here a
   JobSet's own fields, against a strict schema (additionalProperties: false) of the
   jobset.x-k8s.io/v1alpha2 fields render.py sets, since no upstream JobSet schema is
   reachable offline;
2. the env contract: every container's arguments and variables are ones that
   `pstrain <role> --help` documents, ranks come from the Indexed Job, the counts are S and
   W everywhere, and the coordinator and server addresses are the pods' DNS names and the
   ports they listen on and are probed on;
3. failures: exit codes 1-3 fail every Job, 75 is retried; the workers restart as
   cluster.max_restarts (R) of the job says: 4 is permanent for them too, and each rank has a
   budget of R (backoffLimitPerIndex; backoffLimit W * (R + 1), never reached first), or in a
   JobSet one budget W * R for the workers' Job.
4. CURVE (render.py --curve-secret): every role mounts the Secret, each security
   variable names a file the mount provides, workers do not get the server secret key,
   and each role's pstrain, started with real keys laid out as the mount would lay them,
   accepts its keys (exit code not 2, no "security:" error).
Prints one line per failure and exits 1, or prints "ok"."""
import os
import re
import subprocess
import sys
import tempfile

import yaml


def obj(props, required=()):
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False}


STR, INT, BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
# The core objects (ConfigMap, PersistentVolumeClaim, Service, Job, and a JobSet's Job
# templates) are validated against the upstream schemas by validate_upstream.mjs. JobSet's
# own fields have no upstream schema reachable offline (its CRD is not packaged): this is
# the one hand-written part, the fields render.py sets, as jobset.x-k8s.io/v1alpha2
# documents them; each replicated Job's template is the upstream JobTemplateSpec.
UPSTREAM = {("v1", "ConfigMap"), ("v1", "PersistentVolumeClaim"), ("v1", "Service"),
            ("batch/v1", "Job")}
KINDS = {
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): obj({
        "apiVersion": STR, "kind": STR,
        "metadata": {"type": "object"},
        "spec": obj({
            "network": obj({"enableDNSHostnames": BOOL, "subdomain": STR,
                            "publishNotReadyAddresses": BOOL}),
            "startupPolicy": obj({"startupPolicyOrder": {"enum": ["AnyOrder", "InOrder"]}},
                                 ["startupPolicyOrder"]),
            "failurePolicy": obj({"maxRestarts": {"type": "integer", "minimum": 0},
                                  "rules": {"type": "array", "items": obj({
                                      "name": STR,
                                      "action": {"enum": ["FailJobSet", "RestartJobSet",
                                                          "RestartJobSetAndIgnoreMaxRestarts"]},
                                      "onJobFailureReasons": {"type": "array", "items": STR},
                                      "targetReplicatedJobs": {"type": "array", "items": STR}},
                                      ["action"])}}),
            "replicatedJobs": {"type": "array", "minItems": 1, "items": obj({
                "name": STR, "replicas": {"type": "integer", "minimum": 0},
                "template": {"type": "object"}}, ["name", "template"])}},
            ["replicatedJobs"])}, ["spec"]),
}


SECURITY_VARS = ("PSTRAIN_SERVER_KEY", "PSTRAIN_SERVER_PUBLIC", "PSTRAIN_CLIENT_KEY",
                 "PSTRAIN_ALLOW")


def check_curve(curve, pstrain, job_path, errs):
    """curve: {role: (mount path, secret volume, env values)} of the roles that mount keys."""
    if not curve:
        return
    if sorted(curve) != ["coordinator", "server", "worker"]:
        errs.append(f"CURVE: only {sorted(curve)} mount the key Secret")
        return
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        keys = os.path.join(tmp, "keys")
        subprocess.run([pstrain, "keygen", "--out", keys, "server", "worker"], check=True,
                       capture_output=True)
        for role, (mount, vol, val) in sorted(curve.items()):
            items = {i["path"]: i["key"] for i in vol["secret"].get("items", [])}
            if "server.key" in items.values() and role == "worker":
                errs.append("workers: mount the server secret key")
            if vol["secret"].get("defaultMode", 0o644) & 0o007:
                errs.append(f"{role}s: key files readable by others (defaultMode "
                            f"{oct(vol['secret']['defaultMode'])})")
            # The mount as the kubelet would lay it out, with real keys.
            root = os.path.join(tmp, role)
            for path, key in items.items():
                os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
                with open(os.path.join(keys, key)) as f, open(os.path.join(root, path), "w") as g:
                    g.write(f.read())
            env = dict(os.environ)
            for k in SECURITY_VARS:
                v = val.get(k)
                if v is None:
                    errs.append(f"{role}s: {k} is not set")
                    continue
                if v and not v.startswith(mount + "/"):
                    errs.append(f"{role}s: {k}={v} is not under the key mount {mount}")
                    continue
                env[k] = v.replace(mount, root, 1) if v else ""
            # Each role runs until it gives up waiting for its peers (1 s): what matters
            # is that it accepted its keys and switched CURVE on.
            args = {"coordinator": ["--bind", "tcp://127.0.0.1:0"],
                    "server": ["--rank", "0", "--coordinator", "tcp://127.0.0.1:9",
                               "--bind", "127.0.0.1", "--port", "0"],
                    "worker": ["--rank", "0", "--coordinator", "tcp://127.0.0.1:9"]}[role]
            for k in ("PSTRAIN_BIND", "PSTRAIN_PORT", "PSTRAIN_COORDINATOR", "PSTRAIN_RANK"):
                env.pop(k, None)
            runs[role] = subprocess.Popen(
                [pstrain, role, job_path, *args, "--cluster.timeout_s", "1",
                 "--cluster.servers", "1", "--cluster.workers", "1",
                 "--output", os.path.join(tmp, "out")],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for role, r in sorted(runs.items()):
            _, err = r.communicate(timeout=120)
            lines = err.strip().splitlines()
            if r.returncode == 2 or not any("security: CURVE on" in x for x in lines):
                errs.append(f"{role}s: the mounted keys are refused: "
                            f"{lines[-1] if lines else r.returncode}")


def main(path, pstrain, job_path, S, W, image):
    S, W = int(S), int(W)
    errs = []
    # libyaml's parser where python3-yaml has it: the pure-Python one took half of a run.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    R = int(((yaml.load(open(job_path), Loader=loader) or {}).get("cluster") or {}).get("max_restarts", 0))
    jobset = False
    docs = [d for d in yaml.load_all(open(path), Loader=loader) if d is not None]
    for d in docs:
        if (d.get("apiVersion"), d.get("kind")) in UPSTREAM:
            continue
        schema = KINDS.get((d.get("apiVersion"), d.get("kind")))
        if schema is None:
            errs.append(f"{d.get('kind')}: unexpected apiVersion/kind {d.get('apiVersion')}")
            continue
        import jsonschema  # here: only a JobSet needs it, and its import takes most of a second
        for e in jsonschema.Draft7Validator(schema).iter_errors(d):
            errs.append(f"{d['kind']} {d['metadata'].get('name')}: "
                        f"{'/'.join(map(str, e.absolute_path))}: {e.message}")
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    cms = [d for d in by_kind.get("ConfigMap", [])]
    if len(cms) != 1 or cms[0]["data"].get("job.yaml") != open(job_path).read():
        errs.append("the ConfigMap does not hold the job file verbatim")
    # (role, pod hostname prefix, subdomain, job spec)
    if "JobSet" in by_kind:
        js = by_kind["JobSet"][0]
        jobset = True
        sub = js["spec"]["network"]["subdomain"]
        if not js["spec"]["network"].get("enableDNSHostnames"):
            errs.append("JobSet without enableDNSHostnames: pods have no DNS names")
        roles = [(r["name"], f"{js['metadata']['name']}-{r['name']}-0-", sub, r["template"]["spec"])
                 for r in js["spec"]["replicatedJobs"]]
    else:
        svc = by_kind.get("Service", [{}])[0].get("spec", {})
        if svc.get("clusterIP") != "None":
            errs.append("the Service is not headless")
        sub = by_kind["Service"][0]["metadata"]["name"]
        roles = []
        for j in by_kind.get("Job", []):
            pod = j["spec"]["template"]
            if pod["spec"].get("subdomain") != sub:
                errs.append(f"Job {j['metadata']['name']}: subdomain is not the Service {sub}")
            if svc.get("selector", {}).items() - pod["metadata"]["labels"].items():
                errs.append(f"Job {j['metadata']['name']}: pods not selected by the Service")
            roles.append((pod["spec"]["containers"][0]["args"][0], j["metadata"]["name"] + "-",
                          sub, j["spec"]))
    if sorted(r[0] for r in roles) != ["coordinator", "server", "worker"]:
        errs.append(f"roles are {[r[0] for r in roles]}, expected coordinator, server, worker")
    want = {"coordinator": 1, "server": S, "worker": W}
    helps = {}
    curve = {}
    coord_host = coord_port = None
    for role, prefix, sub, spec in roles:
        if role == "coordinator":
            coord_host = f"{prefix}0.{sub}"
    for role, prefix, sub, spec in roles:
        where = f"{role}s"
        if role not in want:
            continue
        if spec.get("completionMode") != "Indexed":
            errs.append(f"{where}: not an Indexed Job, so no JOB_COMPLETION_INDEX rank")
        if spec.get("completions") != want[role] or spec.get("parallelism") != want[role]:
            errs.append(f"{where}: {spec.get('completions')} pods, expected {want[role]}")
        codes = {}
        for r in spec.get("podFailurePolicy", {}).get("rules", []):
            for c in r.get("onExitCodes", {}).get("values", []):
                codes.setdefault(c, r["action"])
        for c in (1, 2, 3, 5):
            if codes.get(c) != "FailJob":
                errs.append(f"{where}: exit code {c} (permanent) does not fail the job")
        if codes.get(75, "Count") not in ("Count", "Ignore"):
            errs.append(f"{where}: exit code 75 (retriable) is not retried")
        if role == "worker":
            if codes.get(4) != "FailJob":
                errs.append("workers: exit code 4 (permanent for a worker) does not fail the job")
            if codes.get(137, "Count") != "Count":
                errs.append("workers: a worker killed by a signal (137) is not retried")
            want_b = (W * R, None) if jobset else (W * (R + 1), R)
            got_b = (spec.get("backoffLimit"), spec.get("backoffLimitPerIndex"))
            if got_b != want_b:
                errs.append(f"workers: backoffLimit/backoffLimitPerIndex {got_b[0]}/{got_b[1]}, "
                            f"expected {want_b[0]}/{want_b[1]} for cluster.max_restarts {R}")
        c = spec["template"]["spec"]["containers"][0]
        if c["image"] != image:
            errs.append(f"{where}: image {c['image']}, expected {image}")
        args = c.get("args", [])
        if role not in helps:
            helps[role] = subprocess.run([pstrain, role, "--help"], capture_output=True,
                                         text=True, check=True).stdout
        h = helps[role]
        for a in args[1:]:
            if a.startswith("--") and not re.search(re.escape(a) + r"\b", h):
                errs.append(f"{where}: argument {a} is not in `pstrain {role} --help`")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        vols = {v["name"]: v for v in spec["template"]["spec"].get("volumes", [])}
        if len(args) < 2 or not args[1].endswith("/job.yaml") or \
                "configMap" not in vols.get(mounts.get(args[1].rsplit("/", 1)[0]), {}):
            errs.append(f"{where}: the job file argument is not the mounted ConfigMap")
        env = {e["name"]: e for e in c.get("env", [])}
        val = {k: e.get("value") for k, e in env.items()}
        for mpath, vname in mounts.items():
            if "secret" in vols.get(vname, {}):
                curve[role] = (mpath, vols[vname], val)
        for k, e in env.items():
            referenced = any(f"$({k})" in (v or "") for v in val.values())
            if not referenced and not re.search(r"\b" + k + r"\b", h):
                errs.append(f"{where}: variable {k} is not in `pstrain {role} --help`")
        if val.get("PSTRAIN_NUM_SERVERS") != str(S) or val.get("PSTRAIN_NUM_WORKERS") != str(W):
            errs.append(f"{where}: counts {val.get('PSTRAIN_NUM_SERVERS')}/"
                        f"{val.get('PSTRAIN_NUM_WORKERS')}, expected {S}/{W}")
        if "PSTRAIN_RANK" in env:
            errs.append(f"{where}: PSTRAIN_RANK would override the Indexed Job's rank")
        probe = c.get("readinessProbe", {}).get("tcpSocket", {}).get("port")
        if role == "coordinator":
            m = re.fullmatch(r"tcp://0\.0\.0\.0:(\d+)", val.get("PSTRAIN_BIND") or "")
            coord_port = m and int(m.group(1))
            if not m or probe != coord_port:
                errs.append(f"coordinator: binds {val.get('PSTRAIN_BIND')}, probed on {probe}")
        else:
            if val.get("PSTRAIN_COORDINATOR") != f"tcp://{coord_host}:{coord_port}":
                errs.append(f"{where}: coordinator {val.get('PSTRAIN_COORDINATOR')}, expected "
                            f"tcp://{coord_host}:{coord_port}")
        if role == "server":
            idx = env.get("POD_INDEX", {}).get("valueFrom", {}).get("fieldRef", {})
            if "job-completion-index" not in idx.get("fieldPath", ""):
                errs.append("servers: POD_INDEX is not the Job's completion index")
            if val.get("PSTRAIN_ADVERTISE") != f"{prefix}$(POD_INDEX).{sub}":
                errs.append(f"servers: advertise {val.get('PSTRAIN_ADVERTISE')}, expected "
                            f"{prefix}$(POD_INDEX).{sub}")
            if val.get("PSTRAIN_BIND") != "0.0.0.0" or probe is None or \
                    str(probe) != val.get("PSTRAIN_PORT"):
                errs.append(f"servers: bind {val.get('PSTRAIN_BIND')} port "
                            f"{val.get('PSTRAIN_PORT')}, probed on {probe}")
    check_curve(curve, pstrain, job_path, errs)
    for e in errs:
        print(e)
    if not errs:
        print("ok")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
