// The Kubernetes examples (deploy/kubernetes/*.json, kubectl reads JSON) must
// not drift from the project: every command, script, env var, port and probe
// path they reference has to exist here.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const DIR = path.join(ROOT, 'deploy/kubernetes');

type Json = any;

function manifests(): Json[] {
  const docs: Json[] = [];
  for (const file of fs.readdirSync(DIR).filter((f) => f.endsWith('.json')).sort()) {
    const doc = JSON.parse(fs.readFileSync(path.join(DIR, file), 'utf8'));
    for (const item of doc.kind === 'List' ? doc.items : [doc]) docs.push({ ...item, file });
  }
  return docs;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

const SRC = sourceFiles(path.join(ROOT, 'src')).map((f) => fs.readFileSync(f, 'utf8')).join('\n');
const PACKAGE = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const docs = manifests();
const workloads = docs.filter((d) => ['Deployment', 'DaemonSet', 'StatefulSet'].includes(d.kind));
const snapfnContainers = workloads.flatMap((w) => w.spec.template.spec.containers.filter((c: Json) => String(c.image).includes('snapfn')).map((c: Json) => ({ workload: w, container: c })));
const envValue = (c: Json, name: string): string | undefined => c.env?.find((e: Json) => e.name === name)?.value;
const portOf = (c: Json, ref: string | number): number | undefined => (typeof ref === 'number' ? c.ports?.find((p: Json) => p.containerPort === ref) : c.ports?.find((p: Json) => p.name === ref))?.containerPort;

/** The script a container's command runs: `npm start` or `npm run <x>`. */
function npmScript(command: string[]): string | undefined {
  if (command[0] !== 'npm') return undefined;
  if (command[1] === 'start' || command[1] === 'test') return command[1];
  if (command[1] === 'run' && command[2]) return command[2];
  return undefined;
}

describe('kubernetes manifests', () => {
  test('parse, and hold a gateway Deployment, a worker DaemonSet and a Redis StatefulSet', () => {
    assert.ok(docs.every((d) => d.apiVersion && d.kind && d.metadata?.name), 'every object has apiVersion, kind, metadata.name');
    const kinds = new Set(workloads.map((w) => `${w.kind}/${w.metadata.name}`));
    for (const want of ['Deployment/snapfn-gateway', 'DaemonSet/snapfn-worker', 'StatefulSet/redis']) assert.ok(kinds.has(want), want);
    assert.equal(snapfnContainers.length, 2);
  });

  test('commands run npm scripts that exist, whose files exist', () => {
    for (const { workload, container } of snapfnContainers) {
      const script = npmScript(container.command ?? []);
      assert.ok(script, `${workload.metadata.name}: command ${JSON.stringify(container.command)} is not an npm script`);
      const line = PACKAGE.scripts?.[script];
      assert.ok(line, `${workload.metadata.name}: package.json has no "${script}" script (add it: see docs/scale-out.md)`);
      for (const file of String(line).match(/\bsrc\/[\w/.-]+\.ts\b/g) ?? []) assert.ok(fs.existsSync(path.join(ROOT, file)), `${script} runs ${file}, which does not exist`);
    }
  });

  test('every env var they set is read somewhere in src/', () => {
    for (const { workload, container } of snapfnContainers) {
      for (const { name } of container.env ?? []) {
        assert.match(SRC, new RegExp(`\\b${name}\\b`), `${workload.metadata.name} sets ${name}, which nothing in src/ reads`);
      }
    }
  });

  test('the gateway listens where its Service and probes point, on the PORT default unless set', () => {
    const defaultPort = Number(/PORT:\s*intSetting\((\d+)/.exec(fs.readFileSync(path.join(ROOT, 'src/config.ts'), 'utf8'))?.[1]);
    assert.ok(defaultPort > 0, 'the PORT default is found in src/config.ts');
    const { container } = snapfnContainers.find((s) => s.workload.kind === 'Deployment')!;
    const port = Number(envValue(container, 'PORT') ?? defaultPort);
    assert.equal(portOf(container, 'http'), port, 'containerPort "http" is the port the gateway listens on');
    const readiness = container.readinessProbe;
    assert.equal(portOf(container, readiness.httpGet.port), port);
    // Every gateway route is declared with its documented path (src/gateway/declare.ts).
    assert.match(SRC, new RegExp(`path: '${readiness.httpGet.path}'`), `the gateway serves ${readiness.httpGet.path}`);
    // Liveness is the port alone: /healthz turns 503 while Redis is away, which must not restart the pod.
    assert.equal(portOf(container, container.livenessProbe.tcpSocket.port), port);
  });

  test('the worker health port is the one it is told to serve', () => {
    const { container } = snapfnContainers.find((s) => s.workload.kind === 'DaemonSet')!;
    const port = Number(envValue(container, 'SNAPFN_WORKER_HEALTH_PORT'));
    assert.equal(portOf(container, 'health'), port);
    for (const probe of [container.readinessProbe, container.livenessProbe]) {
      assert.equal(portOf(container, probe.httpGet.port), port);
      assert.ok(fs.readFileSync(path.join(ROOT, 'src/worker.ts'), 'utf8').includes(`'${probe.httpGet.path}'`), `src/worker.ts serves ${probe.httpGet.path}`);
    }
  });

  test('sandbox pods are privileged (runsc, netns, iptables) without hostPID, and mount the template store at SNAPFN_TEMPLATE_STORE', () => {
    for (const { workload, container } of snapfnContainers) {
      const pod = workload.spec.template.spec;
      assert.equal(container.securityContext?.privileged, true, workload.metadata.name);
      assert.notEqual(pod.hostPID, true, `${workload.metadata.name} needs no hostPID`);
      const store = envValue(container, 'SNAPFN_TEMPLATE_STORE');
      const mount = container.volumeMounts.find((m: Json) => m.mountPath === store);
      assert.ok(mount, `${workload.metadata.name} mounts ${store}`);
      assert.ok(pod.volumes.find((v: Json) => v.name === mount.name)?.hostPath, 'the template store is a hostPath');
      const home = envValue(container, 'SNAPFN_HOME');
      assert.ok(container.volumeMounts.some((m: Json) => m.mountPath === home), `${workload.metadata.name} mounts SNAPFN_HOME`);
    }
  });

  test('Services select pods that have the target port; Redis persists with AOF and never evicts', () => {
    for (const svc of docs.filter((d) => d.kind === 'Service')) {
      const target = workloads.find((w) => Object.entries(svc.spec.selector).every(([k, v]) => w.spec.template.metadata.labels[k] === v));
      assert.ok(target, `service ${svc.metadata.name} selects a workload`);
      for (const p of svc.spec.ports) assert.ok(target.spec.template.spec.containers.some((c: Json) => portOf(c, p.targetPort)), `${svc.metadata.name}: target port ${p.targetPort}`);
    }
    const redis = workloads.find((w) => w.kind === 'StatefulSet')!.spec.template.spec.containers[0];
    const args: string[] = redis.args;
    const arg = (flag: string) => args[args.indexOf(flag) + 1];
    assert.equal(arg('--appendonly'), 'yes');
    assert.equal(arg('--appendfsync'), 'everysec');
    assert.equal(arg('--maxmemory-policy'), 'noeviction');
    assert.ok(arg('--requirepass'), 'Redis holds env and secrets of functions: it requires a password');
  });
});
