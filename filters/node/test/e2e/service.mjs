// A Node service protected by @keymesh/verify, for tests/e2e/tests/node_verify.rs: one verifier (one fetch loop
// for the process) guarding three servers, one per middleware. Every allowed request is answered with
// { framework, keymesh: <identity>, subject: <x-keymesh-subject as the handler sees it> }.
//   KEYMESH_SIDECAR_URL  the sidecar
//   KEYMESH_CONFIG       the filter configuration (JSON)
//   HTTP_PORT, EXPRESS_PORT, FASTIFY_PORT
import http from 'node:http';
import { createRequire } from 'node:module';
import express from 'express';
import Fastify from 'fastify';

const require = createRequire(import.meta.url);
const keymesh = require('../../pkg/index.js');

const verifier = keymesh.createVerifier(JSON.parse(process.env.KEYMESH_CONFIG), {
  sidecarUrl: process.env.KEYMESH_SIDECAR_URL,
  logger: { info: (m) => console.log(m), warn: (m) => console.log(`warn: ${m}`), error: (m) => console.log(`error: ${m}`) },
});

const answer = (framework, req) => ({ framework, keymesh: req.keymesh, subject: req.headers['x-keymesh-subject'] });

const plain = http.createServer(
  keymesh.nodeHttp(verifier, (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(answer('node:http', req)));
  }),
);
plain.listen(Number(process.env.HTTP_PORT), '127.0.0.1');

const app = express();
app.use(keymesh.express(verifier));
app.use((req, res) => res.json(answer('express', req)));
const expressServer = app.listen(Number(process.env.EXPRESS_PORT), '127.0.0.1');

const fastify = Fastify();
await fastify.register(keymesh.fastify(verifier));
fastify.get('/*', async (request) => ({ ...answer('fastify', request.raw), keymesh: request.keymesh }));
await fastify.listen({ port: Number(process.env.FASTIFY_PORT), host: '127.0.0.1' });

console.log('listening');
verifier.ready().then(() => console.log('first key bundle applied'));

process.on('SIGTERM', async () => {
  verifier.close();
  plain.close();
  expressServer.close();
  await fastify.close();
  process.exit(0);
});
