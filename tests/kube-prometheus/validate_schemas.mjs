// Schema checks for tests/tests/kube_prometheus.rs, run with node:
//   node validate_schemas.mjs <tools node dir> servicemonitor FILE...
//   node validate_schemas.mjs <tools node dir> dashboard FILE...
//
// ServiceMonitors: the prometheus-operator CRD schema as shipped by
// @kubernetes-models/prometheus-operator (types, enums, required fields), plus a
// strict pass with a JSON schema generated from the same package's TypeScript
// types with additionalProperties=false, so a misspelt field fails instead of
// being pruned silently by the API server.
// Dashboards: a JSON schema generated from @grafana/grafana-foundation-sdk's
// dashboard types (dashboard.Dashboard, strict), with the Prometheus query type
// (prometheus.Dataquery) for panel targets.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const [toolsNode, kind, ...files] = process.argv.slice(2);
if (!toolsNode || !kind || files.length === 0) {
  console.error('usage: validate_schemas.mjs <tools node dir> servicemonitor|dashboard FILE...');
  process.exit(2);
}
const modules = path.join(toolsNode, 'node_modules');
const require = createRequire(path.join(toolsNode, 'package.json'));
const tsj = require('ts-json-schema-generator');
const Ajv = require('ajv');
const YAML = require('yaml');

function schemaFor(tsSource, typeName) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kadvisor-schema-'));
  const file = path.join(dir, 'types.ts');
  fs.writeFileSync(file, tsSource);
  try {
    return tsj.createGenerator({ path: file, type: typeName, skipTypeCheck: true, additionalProperties: false }).createSchema(typeName);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function load(file) {
  const text = fs.readFileSync(file, 'utf8');
  return file.endsWith('.json') ? JSON.parse(text) : YAML.parse(text);
}

function check(ajvValidate, obj, file, what) {
  if (!ajvValidate(obj)) {
    console.error(`FAIL ${file}: ${what}:\n` + JSON.stringify(ajvValidate.errors.slice(0, 5), null, 2));
    process.exit(1);
  }
}

const ajv = new Ajv({ allErrors: true, strict: false });
let failed = false;
if (kind === 'servicemonitor') {
  const pkg = path.join(modules, '@kubernetes-models/prometheus-operator');
  const { ServiceMonitor } = await import(path.join(pkg, 'monitoring.coreos.com/v1/ServiceMonitor.js'));
  const spec = schemaFor(
    `import type { IServiceMonitorSpec } from ${JSON.stringify(path.join(pkg, 'monitoring.coreos.com/v1/ServiceMonitorSpec.js'))};\nexport type Spec = IServiceMonitorSpec;\n`,
    'Spec');
  const strict = ajv.compile(spec);
  for (const file of files) {
    const obj = load(file);
    try {
      new ServiceMonitor(obj).validate();
    } catch (e) {
      console.error(`FAIL ${file}: prometheus-operator CRD schema: ${e.message}`);
      process.exit(1);
    }
    check(strict, obj.spec, file, 'unknown or mistyped ServiceMonitor spec field');
    console.log(`ok ${file}: ServiceMonitor ${obj.metadata.name}`);
  }
} else if (kind === 'dashboard') {
  const sdk = path.join(modules, '@grafana/grafana-foundation-sdk/dist');
  const dash = schemaFor(
    `import type { Dashboard as D } from ${JSON.stringify(path.join(sdk, 'dashboard/types.gen.js'))};\nexport type GrafanaDashboard = D;\n`,
    'GrafanaDashboard');
  const prom = schemaFor(
    `import type { Dataquery as Q } from ${JSON.stringify(path.join(sdk, 'prometheus/types.gen.js'))};\nexport type Query = Omit<Q, '_implementsDataqueryVariant'>;\n`,
    'Query');
  // cog.Dataquery is an open interface in the SDK; panel targets of these
  // dashboards are Prometheus queries.
  const queryDefs = prom.definitions;
  const queryRoot = { ...prom };
  delete queryRoot.definitions;
  delete queryRoot.$schema;
  for (const [k, v] of Object.entries(queryDefs)) {
    if (!(k in dash.definitions)) dash.definitions[k] = v;
  }
  dash.definitions.Dataquery = queryRoot.$ref ? queryDefs[queryRoot.$ref.split('/').pop()] : queryRoot;
  dash.$ref = '#/definitions/Dashboard';
  const validate = ajv.compile(dash);
  for (const file of files) {
    const obj = load(file);
    check(validate, obj, file, 'Grafana dashboard schema (foundation SDK dashboard.Dashboard)');
    const targets = (obj.panels || []).flatMap((p) => p.targets || []);
    if (targets.length === 0 || targets.some((t) => typeof t.expr !== 'string' || t.expr === '')) {
      console.error(`FAIL ${file}: a panel without a Prometheus expr`);
      process.exit(1);
    }
    console.log(`ok ${file}: "${obj.title}", ${obj.panels.length} panels, ${targets.length} queries`);
  }
} else {
  console.error(`unknown kind ${kind}`);
  process.exit(2);
}
