'use strict';
// Middleware for node:http, Express and Fastify. On allow, `req.keymesh` is the identity and the request's
// headers are what the filter would send upstream (spoofed x-keymesh-* removed, verified ones set, the
// credential removed unless `forward_token`). On deny, the response is the filter's local reply.

/** Applies an allow verdict to a node IncomingMessage: identity, and the headers the filter forwards. */
function admit(req, verdict) {
  req.keymesh = verdict.identity;
  for (const name of verdict.remove) delete req.headers[name];
  Object.assign(req.headers, verdict.headers);
}

/** Sends a deny verdict on a node ServerResponse. */
function refuse(res, verdict) {
  res.writeHead(verdict.status, verdict.headers);
  res.end(verdict.body);
}

/** Decides a node request; true when allowed (and admitted), false when the refusal has been sent. */
function guard(verifier, req, res, url = req.url) {
  const verdict = verifier.authorize({ method: req.method, path: url, headers: req.rawHeaders });
  if (verdict.allow) {
    admit(req, verdict);
    return true;
  }
  refuse(res, verdict);
  return false;
}

/** node:http: wraps a request listener; `handler` runs only for allowed requests. */
function nodeHttp(verifier, handler) {
  return (req, res) => {
    if (guard(verifier, req, res)) handler(req, res);
  };
}

/** Express: `app.use(express(verifier))`. Rules match the full original URL, wherever the middleware is mounted. */
function express(verifier) {
  return (req, res, next) => {
    if (guard(verifier, req, res, req.originalUrl ?? req.url)) next();
  };
}

/** Fastify: `app.register(fastify(verifier))`. Applies to every route of the instance (not encapsulated). */
function fastify(verifier) {
  async function keymeshPlugin(app) {
    app.decorateRequest('keymesh', null);
    app.addHook('onRequest', async (request, reply) => {
      const verdict = verifier.authorize({
        method: request.raw.method,
        path: request.raw.url,
        headers: request.raw.rawHeaders,
      });
      if (verdict.allow) {
        admit(request.raw, verdict);
        request.keymesh = verdict.identity;
        return;
      }
      // A Buffer, so that Fastify sends the filter's content-type as it is (no charset added).
      reply.code(verdict.status).headers(verdict.headers).send(Buffer.from(verdict.body));
      return reply;
    });
  }
  // What the fastify-plugin package does: register the hook on the parent instance, not in a child scope.
  keymeshPlugin[Symbol.for('skip-override')] = true;
  keymeshPlugin[Symbol.for('fastify.display-name')] = 'keymesh';
  return keymeshPlugin;
}

module.exports = { nodeHttp, express, fastify, guard };
