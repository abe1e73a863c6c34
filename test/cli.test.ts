/**
 * The `chunkvault` command as a user runs it: exit codes (0 ok, 1 failed, 2 usage/config),
 * put --wait against a worker process, --json on every command that prints data, every
 * --help ending with its exit codes (and README's CLI table agreeing), the demo with and
 * without a Redis.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { REPO_ROOT, makeTestEnv, runCli, spawnCli, startWorkerProcess, waitFor, type CliRun, type TestEnv } from './support/harness.js';

let env: TestEnv | undefined;
const children: Array<{ kill: (s?: NodeJS.Signals) => boolean; exitCode: number | null }> = [];

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  await env?.cleanup();
  env = undefined;
});

/** A loopback port nothing listens on. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** The one JSON value a `--json` run printed, after checking it succeeded (stdout must parse whole: no log line there). */
function parsed<T = Record<string, unknown>>(run: CliRun): T {
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout) as T;
}

/**
 * Every command's --help, found as a user finds them: from the "Commands:" section of the
 * help one level up, from the root down. A command added later is walked without a change here.
 */
async function everyHelp(): Promise<Map<string, CliRun>> {
  const helps = new Map<string, CliRun>();
  let level: string[][] = [[]];
  while (level.length) {
    const runs = await Promise.all(level.map((path) => runCli([...path, '--help'])));
    level = level.flatMap((path, i) => {
      helps.set(path.join(' '), runs[i]!);
      const section = /\nCommands:\n([\s\S]*?)\n\n/.exec(runs[i]!.stdout)?.[1] ?? '';
      const names = [...section.matchAll(/^ {2}([\w-]+)/gm)].map((m) => m[1]!).filter((name) => name !== 'help');
      return names.map((name) => [...path, name]);
    });
  }
  return helps;
}

/** Commands that print no data, so have no --json (a worker logs to stderr and serves /metrics). */
const PRINTS_NO_DATA = new Set(['worker']);

describe('chunkvault CLI', () => {
  it('exits 2 on a bad config, listing every problem, before connecting to anything', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'chunkvault-cli-'));
    const file = path.join(dir, 'bad.yml');
    await writeFile(file, 'storage:\n  integrity: { checksum_algorithm: crc32 }\nchunkvault:\n  retry: { attempts: 0 }\n');
    const run = await runCli(['stats', '--config', file], { REDIS_URL: `redis://127.0.0.1:${await deadPort()}` });
    await rm(dir, { recursive: true, force: true });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/storage\.integrity\.checksum_algorithm: /);
    expect(run.stderr).toMatch(/chunkvault\.retry\.attempts: /);
    expect(run.stderr).not.toMatch(/Redis/i);
  });

  it('refuses a Node.js older than 24 with exit 2, naming the version it needs and the one it found', async () => {
    // The runtime is made to report Node 22 before the CLI's first module runs.
    const olderNode = "Object.defineProperty(process.versions,'node',{value:'22.11.0'});Object.defineProperty(process,'version',{value:'v22.11.0'})";
    const run = await runCli(['stats'], { NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(olderNode)}`, REDIS_URL: `redis://127.0.0.1:${await deadPort()}` });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/needs Node\.js 24 or newer, and this is v22\.11\.0/);
    expect(run.stdout).toBe('');
  });

  it('exits 2 on bad usage', async () => {
    expect((await runCli(['frobnicate'])).code).toBe(2);
    expect((await runCli(['put', 'README.md'])).code).toBe(2); // no --replica
    const badReplica = await runCli(['put', 'README.md', '--replica', 'nocolon']);
    expect(badReplica.code).toBe(2);
    expect(badReplica.stderr).toMatch(/expected NODE:CLOUD/);
    expect((await runCli(['demo', '--chunks', 'lots'])).code).toBe(2);
    expect((await runCli(['--help'])).code).toBe(0);
  });

  it('exits 1 with how to start Redis when none answers', async () => {
    env = await makeTestEnv({}, `redis://127.0.0.1:${await deadPort()}`);
    const run = await runCli(['stats', '--config', env.configPath]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/no Redis answers at redis:\/\/127\.0\.0\.1:\d+/);
    expect(run.stderr).toMatch(/docker compose up -d redis/);
  });

  it('never prints the Redis password from REDIS_URL', async () => {
    env = await makeTestEnv();
    const run = await runCli(['stats', '--config', env.configPath], { REDIS_URL: `redis://user:hunter2@127.0.0.1:${await deadPort()}` });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/no Redis answers at redis:\/\/\*\*\*:\*\*\*@127\.0\.0\.1/);
    expect(run.stderr + run.stdout).not.toContain('hunter2');
  });

  it('put --wait stores files through a worker process and prints per-replica results', async () => {
    env = await makeTestEnv();
    children.push(await startWorkerProcess(env));
    const file = path.join(env.dir, 'shard-0001.bin');
    const bytes = Buffer.from('training shard '.repeat(4096));
    await writeFile(file, bytes);
    const run = await runCli(['put', file, '--replica', 'aws-node-1:aws', '--replica', 'gcp-node-1:gcp', '--wait', '--timeout', '30', '--json', '--config', env.configPath]);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/^put: replicas ended: 2\/2 \(100%\)$/m);
    const results = JSON.parse(run.stdout);
    expect(results).toHaveLength(2);
    expect(results.map((r: { replicaId: string }) => r.replicaId)).toEqual(['shard-0001.bin_replica_0', 'shard-0001.bin_replica_1']);
    for (const r of results) {
      expect(r).toMatchObject({ chunkId: 'shard-0001.bin', status: 'stored', sizeBytes: bytes.byteLength, checksum: createHash('md5').update(bytes).digest('hex') });
    }
    expect(results.map((r: { cloudProvider: string }) => r.cloudProvider)).toEqual(['aws', 'gcp']);

    const stats = await runCli(['stats', '--json', '--config', env.configPath]);
    expect(stats.code).toBe(0);
    const parsed = JSON.parse(stats.stdout);
    for (const field of ['total_chunks', 'total_size_gb', 'checkpoints_created', 'storage_by_cloud', 'backend_stats', 'successful_stores', 'failed_stores']) {
      expect(parsed).toHaveProperty(field);
    }
    expect(parsed.total_chunks).toBe(1);
    expect(parsed.storage_by_cloud).toEqual({ aws: { count: 1, size_bytes: bytes.byteLength }, gcp: { count: 1, size_bytes: bytes.byteLength } });
  });

  it('put --chunk-id names the chunk; with more than one file it is a usage error', async () => {
    env = await makeTestEnv();
    children.push(await startWorkerProcess(env));
    const file = path.join(env.dir, 'a.bin');
    await writeFile(file, 'abc');
    const run = await runCli(['put', file, '--chunk-id', 'named-chunk', '--replica', 'n1:aws', '--wait', '--timeout', '30', '--config', env.configPath]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^stored named-chunk\/named-chunk_replica_0 on local:\S+ \(3 bytes, md5 900150983cd24fb0d6963f7d28e17f72\)$/m);
    expect((await runCli(['put', file, file, '--chunk-id', 'x', '--replica', 'n1:aws', '--config', env.configPath])).code).toBe(2);
  });

  it('put --wait gives up after --timeout with exit 1 when no worker runs', async () => {
    env = await makeTestEnv();
    const file = path.join(env.dir, 'lonely.bin');
    await writeFile(file, 'nobody will write me');
    const run = await runCli(['put', file, '--replica', 'n1:aws', '--wait', '--timeout', '1', '--config', env.configPath]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/timed out waiting for 1 replica\(s\) \(lonely\.bin_replica_0@lonely\.bin\); is a worker running\?/);
  });

  it('worker reports configured settings it does not implement at start-up', async () => {
    env = await makeTestEnv();
    const worker = await startWorkerProcess(env);
    children.push(worker);
    expect(worker.output().stderr).toMatch(/no write cache is implemented/);
  });

  it('demo stores a seed-like workload on a private Redis when none answers, and exits 0', async () => {
    env = await makeTestEnv({}, `redis://127.0.0.1:${await deadPort()}`);
    const run = await runCli(['demo', '--chunks', '40', '--config', env.configPath]);
    expect(run.stderr).toMatch(/started a private redis-server at redis:\/\/127\.0\.0\.1:\d+/);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/stored: +80 replicas of 40 chunks/);
    expect(run.stdout).toMatch(/failed: +0/);
    expect(run.stdout).toMatch(/bytes: +5242880 /);
    // Not on a terminal: plain progress lines, ending at the total.
    expect(run.stderr).toMatch(/^storing: replicas: 80\/80 \(100%\)$/m);
  });

  it('logs JSON lines on stderr by default and readable lines with --pretty', async () => {
    env = await makeTestEnv();
    const json = await runCli(['reindex', '--config', env.configPath], { LOG_LEVEL: 'info' });
    expect(json.code).toBe(0);
    const finished = json.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)).find((r) => r.msg === 'reindex finished');
    expect(finished).toMatchObject({ level: 30, name: 'chunkvault', metadataRecords: 0 });
    const pretty = await runCli(['--pretty', 'reindex', '--config', env.configPath], { LOG_LEVEL: 'info' });
    expect(pretty.code).toBe(0);
    expect(pretty.stderr).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: reindex finished$/m);
    expect(pretty.stderr).not.toMatch(/^\{/m);
  });

  it('demo --json prints its summary as JSON', async () => {
    env = await makeTestEnv();
    const run = await runCli(['demo', '--chunks', '5', '--size', '1000', '--json', '--config', env.configPath]);
    expect(run.code).toBe(0);
    const summary = JSON.parse(run.stdout) as { redis_prefix: string };
    expect(summary).toMatchObject({ chunks: 5, replicas_stored: 10, chunks_stored: 5, replicas_failed: 0, failures: [], bytes: 10_000 });
    // A deployment of its own per data directory: a demo from another checkout on the same Redis
    // is not refused as a second storage of one deployment, and runs as the first did.
    expect(summary.redis_prefix).toMatch(new RegExp(`^${env.prefix}-demo-[0-9a-f]{8}$`));
    // Its data directory removed to start over, the demo starts its deployment afresh.
    await rm(env.basePath, { recursive: true, force: true });
    const fresh = await runCli(['demo', '--chunks', '5', '--size', '1000', '--json', '--config', env.configPath]);
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(JSON.parse(fresh.stdout)).toMatchObject({ replicas_stored: 10, redis_prefix: summary.redis_prefix });
    const otherCheckout = await makeTestEnv({ chunkvault: { redis: { prefix: env.prefix } } });
    try {
      const again = await runCli(['demo', '--chunks', '5', '--size', '1000', '--json', '--config', otherCheckout.configPath]);
      expect(again.code, again.stderr).toBe(0);
      expect((JSON.parse(again.stdout) as { redis_prefix: string }).redis_prefix).not.toBe(summary.redis_prefix);
    } finally {
      await otherCheckout.cleanup();
    }
  });

  it('every --help ends with the exit codes its command returns, --json is offered wherever data is printed, and README agrees', async () => {
    const helps = await everyHelp();
    // The walk found the commands (so the checks below are not vacuous).
    expect([...helps.keys()]).toEqual(expect.arrayContaining(['', 'worker', 'put', 'get', 'checkpoint', 'checkpoint list', 'checkpoint show', 'checkpoint verify', 'checkpoint create', 'stats', 'cleanup', 'compress', 'scrub', 'reindex', 'serve', 'demo']));
    const readme = await readFile(path.join(REPO_ROOT, 'README.md'), 'utf8');
    for (const [command, run] of helps) {
      expect(run.code, command).toBe(0);
      const [, section] = run.stdout.split('\nExit codes:\n');
      expect(section, `chunkvault ${command} --help has "Exit codes:"`).toBeDefined();
      // It ends the help: nothing after it but its own rows ("  N  text") and their wrapped lines.
      expect(section!.trimEnd().split('\n').filter((l) => !/^ {2}\d {2}\S| {5}\S/.test(l)), command).toEqual([]);
      const listed = [...section!.matchAll(/^ {2}(\d) /gm)].map((m) => Number(m[1]));
      const group = /\nCommands:\n/.test(run.stdout);
      // A group only shows help or refuses bad usage; a command that runs can also fail.
      expect(listed, command).toEqual(group ? (command === '' ? [0, 1, 2] : [0, 2]) : [0, 1, 2]);
      if (group) continue;
      const hasJson = /^ {2}--json /m.test(run.stdout);
      expect(hasJson, `chunkvault ${command} --json`).toBe(!PRINTS_NO_DATA.has(command));
      const row = readme.split('\n').find((line) => line.startsWith(`| \`${command} `) || line.startsWith(`| \`${command}\``));
      expect(row, `README's CLI table has a row for ${command}`).toBeDefined();
      expect(row!.includes('--json'), `README's row for ${command} offers --json as its --help does`).toBe(hasJson);
    }
  }, 180_000); // a CLI process per command: ~15, in parallel per level

  it('every command that prints data prints one JSON value with --json, logs staying on stderr', async () => {
    env = await makeTestEnv();
    children.push(await startWorkerProcess(env));
    const cli = (...args: string[]) => runCli([...args, '--json', '--config', env!.configPath], { LOG_LEVEL: 'info' });
    const file = path.join(env.dir, 'shard-7.bin');
    const bytes = Buffer.from('json all the way down '.repeat(500));
    await writeFile(file, bytes);
    const md5 = createHash('md5').update(bytes).digest('hex');
    const stored = parsed<Array<{ status: string }>>(await cli('put', file, '--replica', 'aws-node-1:aws', '--replica', 'gcp-node-1:gcp', '--wait', '--timeout', '30'));
    expect(stored.map((r) => r.status)).toEqual(['stored', 'stored']);

    const sealed = parsed<Array<{ id: string; chunkCount: number }>>(await cli('checkpoint', 'create'));
    expect(sealed.reduce((sum, e) => sum + e.chunkCount, 0)).toBe(1);
    const id = sealed.at(-1)!.id;
    expect(parsed<Array<{ id: string }>>(await cli('checkpoint', 'list')).map((e) => e.id)).toEqual(sealed.map((e) => e.id));
    const manifest = parsed(await cli('checkpoint', 'show', id));
    expect(manifest).toMatchObject({ format: 'chunkvault.checkpoint/1', id, chunks: [{ chunkId: 'shard-7.bin', checksum: md5, sizeBytes: bytes.byteLength }] });
    // JSON is show's only output: --json prints the same value.
    expect(parsed(await runCli(['checkpoint', 'show', id, '--config', env.configPath]))).toEqual(manifest);
    expect(parsed(await cli('checkpoint', 'verify', id))).toEqual({ id, chunks: 1, replicasChecked: 2, problems: [], expired: [] });

    const toStdout = parsed<{ base64: string }>(await cli('get', 'shard-7.bin'));
    expect(toStdout).toMatchObject({ chunkId: 'shard-7.bin', sizeBytes: bytes.byteLength, checksum: md5, algorithm: 'md5', output: null });
    expect(Buffer.from(toStdout.base64, 'base64').equals(bytes)).toBe(true);
    const copy = path.join(env.dir, 'copy.bin');
    expect(parsed(await cli('get', 'shard-7.bin', '-o', copy))).toMatchObject({ output: copy, base64: null, sizeBytes: bytes.byteLength });
    expect((await readFile(copy)).equals(bytes)).toBe(true);

    expect(parsed(await cli('stats'))).toMatchObject({ total_chunks: 1, successful_stores: 2 });
    expect(parsed(await cli('reindex'))).toEqual({ checkpoints: sealed.length, metadataRecords: 2, restored: 2, problems: [] });
    expect(parsed(await cli('cleanup', '--dry-run'))).toMatchObject({ dryRun: true, replicasDeleted: 0, deleted: [] });
    expect(parsed(await cli('compress', '--dry-run'))).toMatchObject({ dryRun: true, replicasCompressed: 0, items: [] });
    expect(parsed(await cli('scrub', '--now'))).toMatchObject({ replicasChecked: 2, corruptFound: 0, problems: [] });
    expect(parsed(await cli('scrub'))).toEqual({ queued: true, jobId: expect.any(String) });
  }, 180_000); // ~16 CLI processes one after another

  it('put --json without --wait prints what it queued', async () => {
    env = await makeTestEnv();
    const file = path.join(env.dir, 'queued.bin');
    await writeFile(file, 'waiting for a worker');
    const run = await runCli(['put', file, '--replica', 'n1:aws', '--replica', 'n2:gcp', '--json', '--config', env.configPath], { LOG_LEVEL: 'info' });
    expect(parsed(run)).toEqual({ queued: [{ chunkId: 'queued.bin', replicaId: 'queued.bin_replica_0' }, { chunkId: 'queued.bin', replicaId: 'queued.bin_replica_1' }], rejected: [] });
  });

  it('serve --json prints one line naming where it listens, and exits 0 on SIGTERM', async () => {
    env = await makeTestEnv();
    const serve = spawnCli(['serve', '--port', '0', '--json', '--config', env.configPath], { LOG_LEVEL: 'info' });
    children.push(serve);
    const line = await waitFor('serve to listen', () => {
      if (serve.exitCode !== null) throw new Error(`serve exited early (${serve.exitCode}): ${serve.output().stderr}`);
      return /^.*\n/.exec(serve.output().stdout)?.[0];
    }, 30_000);
    const where = JSON.parse(line) as { url: string; metrics: string; api: string; dashboard: string; readOnly: boolean };
    expect(where).toEqual({ url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), dashboard: `${where.url}/admin`, api: `${where.url}/v1`, metrics: `${where.url}/metrics`, readOnly: false });
    expect((await fetch(`${where.url}/readyz`)).status).toBe(200);
    // Its port taken, a second serve is configured wrongly: exit 2, as a worker's metrics port.
    const second = await runCli(['serve', '--port', new URL(where.url).port, '--config', env.configPath]);
    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(/HTTP port 127\.0\.0\.1:\d+ is in use/);
    serve.kill('SIGTERM');
    const ended = await serve.done;
    expect(ended.code).toBe(0);
    expect(ended.stdout).toBe(line);
  });

  it('a group without its subcommand is bad usage (exit 2); asking for help is not', async () => {
    expect((await runCli([])).code).toBe(2);
    expect((await runCli(['checkpoint'])).code).toBe(2);
    expect((await runCli(['help'])).code).toBe(0);
    expect((await runCli(['help', 'checkpoint'])).code).toBe(0);
  });
});
