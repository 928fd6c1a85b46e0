// Verifications per second in one Node process: @keymesh/verify (keymesh-core as WebAssembly, the whole
// authorize() call: extraction, signature, claims, audience, scopes, identity headers, verdict JSON) against
// jose's jwtVerify (node:crypto/OpenSSL: signature, iss, aud, exp), for EdDSA, ES256 and RS256, with fresh tokens
// (a pool larger than keymesh's token cache, cycled) and with one token reused. Rounds are interleaved
// (keymesh, jose, keymesh, jose, …) and the median per case is reported, so a load spike hits both sides.
//   node bench/verify.mjs [--rounds N] [--seconds S]      throughput
//   node --expose-gc bench/verify.mjs --memory [--keys N]  RSS with N API keys in the bundle (default 100000)
import { createRequire } from 'node:module';
import { generateKeyPairSync, createHash, randomBytes } from 'node:crypto';
import * as jose from 'jose';

const require = createRequire(import.meta.url);
const keymesh = require('../pkg/index.js');

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const ISSUER = 'https://issuer.bench.test';
const ORDERS = 'https://orders.local';
const CACHE = 1024;
const POOL = 4 * CACHE;

function config() {
  return {
    sidecar: { cluster: 'keymesh' },
    token_cache_size: CACHE,
    routes: [{ prefix: '/', audience: ORDERS, scopes: ['orders:read'], credential: 'either' }],
  };
}

function verifierFor(bundle) {
  let served = false;
  const transport = (req) =>
    served
      ? new Promise((_, reject) => req.signal.addEventListener('abort', () => reject(new Error('closed'))))
      : ((served = true), Promise.resolve({ status: 200, body: Buffer.from(JSON.stringify(bundle)) }));
  return keymesh.createVerifier(config(), { transport, logger: null });
}

async function throughput() {
  const rounds = flag('--rounds', 5);
  const seconds = flag('--seconds', 1);
  const algs = {
    EdDSA: generateKeyPairSync('ed25519'),
    ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    RS256: generateKeyPairSync('rsa', { modulusLength: 2048 }),
  };
  const keys = [];
  for (const [alg, pair] of Object.entries(algs)) {
    keys.push({ ...pair.publicKey.export({ format: 'jwk' }), kid: `${alg}-1`, alg, use: 'sig' });
  }
  const verifier = verifierFor({ version: 1, issuers: [{ issuer: ISSUER, jwks: { keys } }] });
  await verifier.ready();
  const now = Math.floor(Date.now() / 1000);
  const cases = [];
  for (const [alg, pair] of Object.entries(algs)) {
    process.stderr.write(`signing ${POOL} ${alg} tokens\n`);
    const tokens = [];
    for (let i = 0; i < POOL; i++) {
      tokens.push(
        await new jose.SignJWT({ scope: 'orders:read', client_id: 'bench', jti: `j-${alg}-${i}` })
          .setProtectedHeader({ alg, kid: `${alg}-1`, typ: 'at+jwt' })
          .setIssuer(ISSUER)
          .setAudience(ORDERS)
          .setSubject(`user-${i}`)
          .setIssuedAt(now)
          .setExpirationTime(now + 3600)
          .sign(pair.privateKey),
      );
    }
    const check = verifier.authorize({ path: '/orders/1', headers: { authorization: `Bearer ${tokens[0]}` } });
    if (!check.allow) throw new Error(`keymesh refused the ${alg} bench token: ${check.body}`);
    await jose.jwtVerify(tokens[0], pair.publicKey, { issuer: ISSUER, audience: ORDERS });
    for (const [name, pool] of [['fresh', tokens], ['reused', [tokens[0]]]]) {
      cases.push({ alg, name, pool, publicKey: pair.publicKey, keymesh: [], jose: [] });
    }
  }
  const headers = { authorization: '' };
  const runKeymesh = (pool) => {
    const end = performance.now() + seconds * 1000;
    let n = 0;
    while (performance.now() < end) {
      for (let i = 0; i < 64; i++) {
        headers.authorization = `Bearer ${pool[n++ % pool.length]}`;
        if (!verifier.authorize({ method: 'GET', path: '/orders/1', headers }).allow) throw new Error('refused');
      }
    }
    return n / seconds;
  };
  const runJose = async (pool, key) => {
    const end = performance.now() + seconds * 1000;
    let n = 0;
    while (performance.now() < end) {
      for (let i = 0; i < 64; i++) {
        await jose.jwtVerify(pool[n++ % pool.length], key, { issuer: ISSUER, audience: ORDERS });
      }
    }
    return n / seconds;
  };
  for (let r = 0; r < rounds; r++) {
    process.stderr.write(`round ${r + 1}/${rounds}\n`);
    for (const c of cases) {
      c.keymesh.push(runKeymesh(c.pool));
      c.jose.push(await runJose(c.pool, c.publicKey));
    }
  }
  verifier.close();
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const fmt = (x) => Math.round(x).toLocaleString('en-US');
  console.log(`node ${process.version}, jose ${require('jose/package.json').version}, ${rounds} interleaved rounds of ${seconds} s per side, median`);
  console.log('| algorithm | tokens | keymesh verifications/s | jose verifications/s | keymesh / jose |');
  console.log('|---|---|---:|---:|---:|');
  for (const c of cases) {
    const [k, j] = [median(c.keymesh), median(c.jose)];
    console.log(`| ${c.alg} | ${c.name === 'fresh' ? `fresh (pool ${POOL}, cache ${CACHE})` : 'one reused'} | ${fmt(k)} | ${fmt(j)} | ${(k / j).toFixed(2)}× |`);
  }
}

async function memory() {
  const count = flag('--keys', 100000);
  const gc = globalThis.gc ?? (() => {});
  gc();
  const before = process.memoryUsage();
  const apiKeys = [];
  let lastKey = '';
  for (let i = 0; i < count; i++) {
    const key = `km_${randomBytes(32).toString('base64url')}`;
    lastKey = key;
    apiKeys.push({
      hash: createHash('sha256').update(key).digest('base64url'),
      id: `ak_${String(i).padStart(12, '0')}`,
      owner: `owner-${i % 1000}`,
      resources: [ORDERS],
      scopes: ['orders:read'],
    });
  }
  const bundle = { version: 1, issuers: [], api_keys: { put: apiKeys, delete: [] } };
  const bytes = JSON.stringify(bundle).length;
  const verifier = verifierFor(bundle);
  await verifier.ready();
  apiKeys.length = 0;
  gc();
  await new Promise((r) => setTimeout(r, 100));
  gc();
  const after = process.memoryUsage();
  const mib = (x) => (x / 1024 / 1024).toFixed(1);
  const probe = verifier.authorize({ path: '/orders/1', headers: { authorization: `apikey ${lastKey}` } });
  if (!probe.allow) throw new Error(`the last API key of the bundle is refused: ${probe.body}`);
  console.log(`node ${process.version}: ${count} API keys held, bundle v${verifier.status().version} (${mib(bytes)} MiB of JSON)`);
  console.log(`RSS before ${mib(before.rss)} MiB, after ${mib(after.rss)} MiB (+${mib(after.rss - before.rss)} MiB); ` +
    `JS heap ${mib(after.heapUsed)} MiB; external+arrayBuffers (the wasm memory) ${mib(after.external + after.arrayBuffers)} MiB`);
  verifier.close();
}

await (args.includes('--memory') ? memory() : throughput());
