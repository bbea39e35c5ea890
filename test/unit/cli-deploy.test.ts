/**
 * The container deliverables hold together without a Docker engine or a cluster: the Dockerfile
 * runs as numeric 10001:10001 on Node 24 with `portcullis healthcheck` as its HEALTHCHECK;
 * deploy/compose.yaml (two gateways + Redis, config from a read-only directory, the secret key
 * from a file) and deploy/kubernetes/ (Deployment ×2 with readiness on the admin listener's
 * /readyz, Service, Secret, ConfigMap, Redis) parse as YAML and refer to each other consistently;
 * and the gateway configurations they ship pass `portcullis check-config`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, parseAllDocuments } from 'yaml';
import { runCommand } from '../helpers/cli.js';
import { tmpDir } from '../helpers/tmp.js';
import { loadConfigFile } from '../../src/config/index.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');
const K8S = join(DEPLOY, 'kubernetes');

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

test('Dockerfile: numeric USER 10001:10001, HEALTHCHECK is `portcullis healthcheck`, Node 24 (current LTS), config from PORTCULLIS_CONFIG', () => {
  const df = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const lines = df.split('\n').filter((l) => !l.startsWith('#'));
  assert.ok(lines.includes('USER 10001:10001'), 'USER is numeric');
  assert.equal(lines.filter((l) => l.startsWith('USER ')).length, 1);
  assert.match(df, /^ARG NODE_IMAGE=node:24-[a-z-]+$/m);
  assert.match(df, /^HEALTHCHECK .*\\\n\s+CMD \["portcullis", "healthcheck"\]$/m);
  assert.match(df, /ln -s \/app\/dist\/src\/cli\/main\.js \/usr\/local\/bin\/portcullis/, 'portcullis is on PATH for the health check and docker exec');
  assert.match(df, /PORTCULLIS_CONFIG=\/etc\/portcullis\/portcullis\.yaml/);
  assert.match(df, /^CMD \["serve"\]$/m);
  // the runtime stage switches user after everything root must do
  const runtime = df.slice(df.lastIndexOf('\nFROM '));
  assert.ok(runtime.indexOf('USER 10001:10001') > runtime.lastIndexOf('\nRUN '));
});

async function checkConfig(text: string, name: string): Promise<void> {
  const dir = await tmpDir('pc-deploy');
  try {
    const file = join(dir.dir, name);
    await writeFile(file, text);
    const r = await runCommand(['check-config', '--config', file]);
    assert.equal(r.code, 0, `${name}: ${r.err}`);
  } finally {
    await dir.cleanup();
  }
}

test('deploy/compose.yaml: two gateways and Redis, config mounted read-only, the secret key from a file, the shared config valid', async () => {
  const compose = parse(readFileSync(join(DEPLOY, 'compose.yaml'), 'utf8')) as Obj;
  const services = compose['services'] as Obj;
  assert.deepEqual(Object.keys(services).sort(), ['portcullis-1', 'portcullis-2', 'redis']);
  assert.ok(services['redis'].healthcheck, 'Redis has a health check the gateways wait for');

  const secrets = compose['secrets'] as Obj;
  const published = new Set<string>();
  for (const name of ['portcullis-1', 'portcullis-2']) {
    const s = services[name] as Obj;
    assert.equal(s['image'], 'portcullis:latest');
    assert.equal(s['depends_on'].redis.condition, 'service_healthy');
    assert.equal(s['environment'].PORTCULLIS_CONFIG, '/etc/portcullis/portcullis.yaml');
    // the secret key is a file (a compose secret), never a value in the file or the environment
    assert.equal(s['environment'].PORTCULLIS_SECRET_KEY, undefined);
    assert.equal(s['environment'].PORTCULLIS_SECRET_KEY_FILE, '/run/secrets/portcullis_secret_key');
    assert.deepEqual(s['secrets'], ['portcullis_secret_key']);
    assert.ok((s['volumes'] as string[]).includes('./config:/etc/portcullis:ro'), `${name} mounts the config read-only`);
    assert.ok((s['volumes'] as string[]).includes('portcullis-data:/var/lib/portcullis'));
    assert.equal(s['read_only'], true);
    assert.deepEqual(s['cap_drop'], ['ALL']);
    for (const p of s['ports'] as string[]) {
      assert.match(p, /^127\.0\.0\.1:\d+:8080$/, 'published on the host loopback, for the host\'s load balancer');
      published.add(p);
    }
  }
  assert.equal(published.size, 2);
  assert.equal(services['portcullis-1'].build.context, '..');
  assert.equal(services['portcullis-2'].depends_on['portcullis-1'].condition, 'service_healthy', 'the second waits for the first start to create the shared files');
  assert.equal(secrets['portcullis_secret_key'].file, './secrets/secret.key');
  assert.match(readFileSync(join(DEPLOY, 'secrets', '.gitignore'), 'utf8'), /^\*$/m, 'secret files are never committed');
  assert.ok((compose['volumes'] as Obj)['portcullis-data'] !== undefined);

  // the mounted config: valid, listening on every address, Redis by its service name, and the
  // host's address (the compose network's gateway) trusted
  const cfgText = readFileSync(join(DEPLOY, 'config', 'portcullis.yaml'), 'utf8');
  await checkConfig(cfgText, 'compose.yaml');
  const loaded = await loadConfigFile(join(DEPLOY, 'config', 'portcullis.yaml'), { checkFiles: false });
  assert.ok(loaded.ok);
  const cfg = loaded.config;
  assert.equal(cfg.listen.host, '0.0.0.0');
  assert.equal(cfg.listen.port, 8080);
  assert.deepEqual(cfg.store, { kind: 'redis', url: 'redis://redis:6379/0' });
  assert.ok(cfg.dataDir.startsWith('/var/lib/portcullis') && cfg.usersFile.startsWith('/var/lib/portcullis/'), 'everything written lives on the data volume');
  const gateway = (compose['networks'] as Obj)['portcullis'].ipam.config[0].gateway as string;
  assert.ok(cfg.trustedProxies.contains(gateway), `trusted_proxies covers the compose network's gateway ${gateway}`);
});

function k8sDocs(): Obj[] {
  const out: Obj[] = [];
  for (const f of readdirSync(K8S).filter((n) => n.endsWith('.yaml') && n !== 'kustomization.yaml')) {
    // Kubernetes reads YAML 1.1 (`defaultMode: 0440` is octal)
    for (const d of parseAllDocuments(readFileSync(join(K8S, f), 'utf8'), { version: '1.1' })) {
      assert.deepEqual(d.errors, [], f);
      out.push({ ...(d.toJS() as Obj), __file: f });
    }
  }
  return out;
}

test('deploy/kubernetes: Deployment ×2 ready on the admin /readyz, Service, Secret, ConfigMap (valid config), Redis; kustomization lists them all', async () => {
  const docs = k8sDocs();
  const find = (kind: string, name: string): Obj => {
    const d = docs.find((x) => x['kind'] === kind && x['metadata']?.name === name);
    assert.ok(d, `${kind}/${name} is defined`);
    return d;
  };
  for (const d of docs) assert.ok(typeof d['apiVersion'] === 'string' && typeof d['kind'] === 'string' && typeof d['metadata']?.name === 'string', `${d['__file']}: apiVersion, kind, metadata.name`);

  const kust = parse(readFileSync(join(K8S, 'kustomization.yaml'), 'utf8')) as Obj;
  assert.deepEqual([...(kust['resources'] as string[])].sort(), readdirSync(K8S).filter((n) => n.endsWith('.yaml') && n !== 'kustomization.yaml').sort());

  // the config, from the ConfigMap
  const cm = find('ConfigMap', 'portcullis-config');
  await checkConfig(cm['data']['portcullis.yaml'] as string, 'configmap.yaml');
  const dir = await tmpDir('pc-deploy-k8s');
  const cfgFile = join(dir.dir, 'portcullis.yaml');
  await writeFile(cfgFile, cm['data']['portcullis.yaml'] as string);
  const loaded = await loadConfigFile(cfgFile, { checkFiles: false });
  await dir.cleanup();
  assert.ok(loaded.ok);
  const cfg = loaded.config;

  const dep = find('Deployment', 'portcullis');
  assert.equal(dep['spec'].replicas, 2);
  const pod = dep['spec'].template.spec as Obj;
  assert.deepEqual(dep['spec'].selector.matchLabels, { 'app.kubernetes.io/name': 'portcullis' });
  assert.equal(dep['spec'].template.metadata.labels['app.kubernetes.io/name'], 'portcullis');
  assert.equal(pod['securityContext'].runAsNonRoot, true);
  assert.equal(pod['securityContext'].runAsUser, 10001);
  assert.equal(pod['securityContext'].runAsGroup, 10001);
  const c = (pod['containers'] as Obj[]).find((x) => x['name'] === 'portcullis')!;
  const port = (name: string) => (c['ports'] as Obj[]).find((p) => p['name'] === name)?.['containerPort'] as number;
  assert.equal(port('http'), cfg.listen.port);
  assert.equal(port('admin'), cfg.admin.listen.port);
  assert.equal(cfg.admin.listen.host, '0.0.0.0', 'the kubelet probes the admin listener on the pod address');
  assert.deepEqual(c['readinessProbe'].httpGet, { path: '/readyz', port: 'admin' });
  assert.deepEqual(c['livenessProbe'].httpGet, { path: '/.portcullis/healthz', port: 'http' });
  assert.equal(c['securityContext'].readOnlyRootFilesystem, true);
  assert.equal(c['securityContext'].allowPrivilegeEscalation, false);
  const env = Object.fromEntries((c['env'] as Obj[]).map((e) => [e['name'], e]));
  assert.equal(env['PORTCULLIS_CONFIG'].value, '/etc/portcullis/portcullis.yaml');

  // the Secret holds the key the Deployment reads, and the shared assertion keys
  const secret = find('Secret', 'portcullis-secrets');
  const keyRef = env['PORTCULLIS_SECRET_KEY'].valueFrom.secretKeyRef as Obj;
  assert.equal(keyRef['name'], 'portcullis-secrets');
  assert.ok(keyRef['key'] in secret['stringData']);
  assert.ok('assertion-keys.json' in secret['stringData']);
  const users = find('Secret', 'portcullis-users');
  assert.ok('users.yaml' in users['stringData']);
  assert.deepEqual(parse(users['stringData']['users.yaml'] as string), { users: {} });

  // volumes: every mount has its volume; config and users read-only where the config expects them
  const volumes = new Map((pod['volumes'] as Obj[]).map((v) => [v['name'] as string, v]));
  const mounts = [...(c['volumeMounts'] as Obj[]), ...((pod['initContainers'] as Obj[]).flatMap((i) => i['volumeMounts'] as Obj[]))];
  for (const m of mounts) assert.ok(volumes.has(m['name']), `volume ${m['name']}`);
  const mountOf = (vol: string) => (c['volumeMounts'] as Obj[]).find((m) => m['name'] === vol)!;
  assert.equal(volumes.get('config')!['configMap'].name, 'portcullis-config');
  assert.equal(mountOf('config').mountPath, '/etc/portcullis');
  assert.equal(mountOf('config').readOnly, true);
  assert.equal(volumes.get('users')!['secret'].secretName, 'portcullis-users');
  assert.ok(cfg.usersFile.startsWith(`${mountOf('users').mountPath}/`), 'users_file is in the users Secret');
  assert.equal(mountOf('data').mountPath, cfg.dataDir);
  assert.equal(volumes.get('secrets')!['secret'].secretName, 'portcullis-secrets');
  assert.equal(volumes.get('secrets')!['secret'].defaultMode, 0o440);
  const init = (pod['initContainers'] as Obj[])[0]!;
  assert.deepEqual(init['command'].slice(0, 3), ['install', '-m', '0600']);
  assert.equal(init['command'][4], join(cfg.dataDir, 'assertion-keys.json'));

  // the Service exposes the gateway's port only, to the Deployment's pods
  const svc = find('Service', 'portcullis');
  assert.deepEqual(svc['spec'].selector, dep['spec'].selector.matchLabels);
  assert.deepEqual((svc['spec'].ports as Obj[]).map((p) => p['targetPort']), ['http']);

  // Redis under the name the config's store uses
  assert.equal(cfg.store.kind, 'redis');
  const redisHost = new URL((cfg.store as { url: string }).url).hostname;
  const redisSvc = find('Service', redisHost);
  const redis = find('Deployment', redisHost);
  assert.deepEqual(redisSvc['spec'].selector, redis['spec'].selector.matchLabels);
  assert.equal((redisSvc['spec'].ports as Obj[])[0]!['port'], Number(new URL((cfg.store as { url: string }).url).port));

  const pdb = find('PodDisruptionBudget', 'portcullis');
  assert.deepEqual(pdb['spec'].selector.matchLabels, dep['spec'].selector.matchLabels);
  assert.ok(existsSync(join(K8S, 'kustomization.yaml')));
});
