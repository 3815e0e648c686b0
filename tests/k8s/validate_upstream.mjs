// tests/k8s/validate_upstream.mjs MANIFESTS.yaml [MORE.yaml ...]
//
// Validates every object of rendered manifests (deploy/k8s/render.py) against the upstream
// Kubernetes OpenAPI schemas, as the npm package kubernetes-models carries them (generated
// from the API server's swagger, with its ajv validators: types, enums, formats, required
// fields). Those validators accept fields the schema does not know, as a JSON schema
// without additionalProperties does -- the API server does not: kubectl's default
// field validation (Strict) refuses them. So the same validator is run on a view of the
// object that records which fields it looks up: for every object the schema describes by
// its properties it asks for each of them, so a field it never asked for is one the
// upstream schema does not have (a misspelt or unknown field). Objects the schema types
// as maps (labels, a ConfigMap's data, resource quantities) are enumerated by the
// validator, and then every key is allowed.
//
// JobSet (jobset.x-k8s.io) is not in kubernetes-models and its CRD cannot be fetched
// offline, so a JobSet's Job templates (spec.replicatedJobs[].template, which the CRD types
// as batch/v1 JobTemplateSpec) are validated against that upstream schema here, and the
// JobSet's own fields by the schema in check_manifests.py.
//
// Prints one line per problem ("Job pstrain-server: spec.template.spec.containers[0]:
// unknown field 'readinesProbe'") and exits 1, or prints "ok"; with several files, per file.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";

const SCHEMAS = {
  "v1/ConfigMap": "IoK8sApiCoreV1ConfigMap",
  "v1/PersistentVolumeClaim": "IoK8sApiCoreV1PersistentVolumeClaim",
  "v1/Service": "IoK8sApiCoreV1Service",
  "v1/Secret": "IoK8sApiCoreV1Secret",
  "batch/v1/Job": "IoK8sApiBatchV1Job",
};
const JOBSET = "jobset.x-k8s.io/v1alpha2/JobSet";

const require = createRequire(import.meta.url);
const dir = (pkg) => require.resolve(`${pkg}/package.json`).replace(/package\.json$/, "");
// apimachinery (ObjectMeta, ...) is a package of its own, a dependency of kubernetes-models.
const ROOTS = [dir("kubernetes-models"), dir("@kubernetes-models/apimachinery")];
async function validator(name) {
  const root = ROOTS[name.startsWith("IoK8sApimachinery") ? 1 : 0];
  return (await import(`${root}_schemas/${name}.js`)).validate;
}

// A read-only view of v that records, per object, the keys looked up (get, has) and
// whether the object was enumerated (a map: every key allowed).
function tracked(v, seen) {
  if (v === null || typeof v !== "object") return v;
  const rec = seen.get(v) || { keys: new Set(), map: false };
  seen.set(v, rec);
  return new Proxy(v, {
    get(t, k, r) {
      if (typeof k === "string") rec.keys.add(k);
      return tracked(Reflect.get(t, k, r), seen);
    },
    has(t, k) {
      if (typeof k === "string") rec.keys.add(k);
      return Reflect.has(t, k);
    },
    ownKeys(t) {
      rec.map = true;
      return Reflect.ownKeys(t);
    },
  });
}

function unknownFields(v, seen, path, out) {
  if (v === null || typeof v !== "object") return;
  const rec = seen.get(v);
  if (Array.isArray(v)) {
    v.forEach((x, i) => unknownFields(x, seen, `${path}[${i}]`, out));
    return;
  }
  for (const k of Object.keys(v)) {
    const p = path ? `${path}.${k}` : k;
    if (rec && !rec.map && !rec.keys.has(k)) out.push(`${path || "(top level)"}: unknown field '${k}'`);
    else if (rec) unknownFields(v[k], seen, p, out);
  }
}

// Problems of object v under the upstream schema `name` (paths prefixed with at).
async function check(name, v, at) {
  const validate = await validator(name);
  const seen = new Map();
  const ok = validate(tracked(v, seen));
  const out = [];
  if (!ok)
    for (const e of validate.errors || []) {
      const p = (at + e.instancePath.replace(/\/(\d+)/g, "[$1]").replace(/\//g, ".")) || "(top level)";
      const why = e.keyword === "type" ? `must be ${e.params.type}` :
        e.keyword === "enum" ? `must be one of ${e.params.allowedValues.join(", ")}` :
          e.keyword === "required" ? `lacks required field '${e.params.missingProperty}'` :
            e.message || `${e.keyword} ${JSON.stringify(e.params)}`;
      out.push(`${p.replace(/^\./, "")}: ${why}`);
    }
  const unk = [];
  unknownFields(v, seen, "", unk);
  for (const u of unk) out.push(at ? `${at}.${u}`.replace(/\.\(top level\)/, "") : u);
  return out;
}

// Problems of every object in one manifests file.
async function problems(file) {
  const errs = [];
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const d of docs) {
    if (d.errors.length) {
      errs.push(`YAML: ${d.errors[0].message}`);
      continue;
    }
    const o = d.toJS();
    if (o === null) continue;
    const kind = `${o.apiVersion}/${o.kind}`;
    const who = `${o.kind} ${o.metadata && o.metadata.name}`;
    if (kind === JOBSET) {
      for (const [i, r] of ((o.spec && o.spec.replicatedJobs) || []).entries())
        for (const e of await check("IoK8sApiBatchV1JobTemplateSpec", r.template, `spec.replicatedJobs[${i}].template`))
          errs.push(`${who}: ${e}`);
      for (const e of await check("IoK8sApimachineryPkgApisMetaV1ObjectMeta", o.metadata, "metadata"))
        errs.push(`${who}: ${e}`);
      continue;
    }
    if (!SCHEMAS[kind]) {
      errs.push(`${who}: no upstream schema for ${kind}`);
      continue;
    }
    for (const e of await check(SCHEMAS[kind], o, "")) errs.push(`${who}: ${e}`);
  }
  return errs;
}

// Several files: each line is prefixed with the file's name ("bad.yaml: ok"), so one node
// process (most of its time is starting and loading the schemas) checks them all.
const files = process.argv.slice(2);
if (!files.length) {
  console.error("usage: node validate_upstream.mjs MANIFESTS.yaml [MORE.yaml ...]");
  process.exit(2);
}
let failed = false;
for (const file of files) {
  const errs = await problems(file);
  const pre = files.length > 1 ? `${file}: ` : "";
  for (const e of errs) console.log(pre + e);
  if (!errs.length) console.log(`${pre}ok`);
  failed ||= errs.length > 0;
}
process.exit(failed ? 1 : 0);
