'use strict';
// The default transport of the fetch loop: one keep-alive HTTP(S) agent per verifier, node's standard library
// only. A transport takes { method, path, headers, body, timeoutMs, signal } and resolves to
// { status, body: Uint8Array }; it rejects when the request fails or times out.

const http = require('node:http');
const https = require('node:https');

function createHttpTransport(baseUrl) {
  const base = new URL(baseUrl);
  if (base.protocol !== 'http:' && base.protocol !== 'https:') {
    throw new TypeError(`sidecarUrl must be an http: or https: URL, got ${base.protocol}`);
  }
  const lib = base.protocol === 'https:' ? https : http;
  const agent = new lib.Agent({ keepAlive: true, maxSockets: 4 });
  function send({ method = 'GET', path, headers = {}, body, timeoutMs, signal }) {
    return new Promise((resolve, reject) => {
      const url = new URL(path, base);
      const req = lib.request(url, { method, headers, agent, signal }, (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      // Covers the whole exchange, long poll included, like the filter's dispatch timeout.
      const timer = setTimeout(() => req.destroy(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      req.on('close', () => clearTimeout(timer));
      req.on('error', reject);
      req.end(body);
    });
  }
  send.close = () => agent.destroy();
  return send;
}

module.exports = { createHttpTransport };
