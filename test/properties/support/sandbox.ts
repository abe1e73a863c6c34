/**
 * A test env whose backend root and staging dir sit a few levels deep inside a watched
 * directory, next to an `outside/` directory hostile absolute paths point into; a write that
 * escapes either root by up to four levels shows up in the watched tree.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { makeTestEnv, type TestEnv } from '../../support/harness.js';
import { newPathsOutside, treeOf } from './hostile.js';

export interface Sandbox {
  env: TestEnv;
  /** The watched directory. */
  watched: string;
  /** Where hostile absolute paths point (inside `watched`, outside both roots). */
  outside: string;
  /** Every path under `watched` now. */
  snapshot(): Promise<string[]>;
  /** Paths created under `watched` since `before`, other than inside the backend root or the staging dir. */
  escapedSince(before: readonly string[]): Promise<string[]>;
  cleanup(): Promise<void>;
}

export async function makeSandbox(overrides: Record<string, unknown> = {}): Promise<Sandbox> {
  const watched = await mkdtemp(path.join(tmpdir(), 'chunkvault-fuzz-'));
  const deep = path.join(watched, 'l1', 'l2', 'l3');
  const outside = path.join(watched, 'outside');
  await mkdir(outside, { recursive: true });
  const basePath = path.join(deep, 'data');
  const stagingDir = path.join(deep, 'staging');
  const env = await makeTestEnv({
    ...overrides,
    storage: { ...(overrides.storage as object), backends: { local: { base_path: basePath } } },
    chunkvault: { ...(overrides.chunkvault as object), staging: { dir: stagingDir } },
  });
  return {
    env,
    watched,
    outside,
    snapshot: () => treeOf(watched),
    escapedSince: (before) => newPathsOutside(watched, before, [env.basePath, env.stagingDir]),
    async cleanup() {
      await env.cleanup();
      await rm(watched, { recursive: true, force: true });
    },
  };
}
