/**
 * Readiness: Redis answers PING and every configured backend answers its probe (one cheap
 * request, or a look at the local directory). Each check is bounded in time, so a hung
 * connection reports "timed out" instead of hanging the probe. Errors are redacted.
 */
import type { Chunkvault } from '../app.js';
import { describeError } from '../errors.js';
import type { ReadinessCheck } from './api-schemas.js';

/** How long one check may take before it counts as failed. */
export const READINESS_TIMEOUT_MS = 3_000;

export async function checkReadiness(vault: Chunkvault, timeoutMs = READINESS_TIMEOUT_MS): Promise<ReadinessCheck[]> {
  const checks: Array<[string, () => Promise<unknown>]> = [
    ['redis', () => vault.pingRedis()],
    ...vault.backends.all().map((backend): [string, () => Promise<unknown>] => [`backend:${backend.name}`, () => backend.probe()]),
  ];
  return Promise.all(checks.map(([name, run]) => outcome(name, run, timeoutMs)));
}

async function outcome(name: string, run: () => Promise<unknown>, timeoutMs: number): Promise<ReadinessCheck> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([run(), timeout]);
    return { name, ok: true };
  } catch (error) {
    return { name, ok: false, error: describeError(error) };
  } finally {
    clearTimeout(timer);
  }
}
