// Shared helpers of the package's tests: the scenario fixtures, and a fake sidecar transport (no network).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
export const keymesh = require('../pkg/index.js');

export const fixtures = JSON.parse(readFileSync(new URL('./fixtures/scenarios.json', import.meta.url), 'utf8'));

/** A clock the test moves by hand. */
export function manualClock(startMs) {
  const clock = () => clock.now;
  clock.now = startMs;
  return clock;
}

/**
 * A scripted sidecar: every request is recorded, and answered by `answer(request)` (a {status, body} value, a
 * promise of one, or a thrown error for a failed connection).
 */
export function fakeSidecar(answer) {
  const requests = [];
  const transport = async (request) => {
    requests.push(request);
    const res = await answer(request, requests.length);
    return { status: res.status, body: Buffer.from(typeof res.body === 'string' ? res.body : JSON.stringify(res.body ?? '')) };
  };
  return { transport, requests };
}

/** Resolves when `check()` is truthy (polled), or rejects after `ms`. */
export async function until(check, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out waiting for a condition');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A long poll that never answers until the test ends (the request is aborted by close()). */
export function hang(request) {
  return new Promise((_, reject) => request.signal.addEventListener('abort', () => reject(new Error('aborted'))));
}
