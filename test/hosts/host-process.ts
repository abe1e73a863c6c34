/**
 * A `chunkvault` CLI process on one host: `node dist/cli/main.js` run inside the host's
 * network namespace (`ip netns exec`, which execs, so the child's pid is node's), in the
 * host's directory, with nothing of the test process's environment: only the host's HOME and
 * TMPDIR, PATH, and what the scenario passes (REDIS_URL, credentials, LOG_LEVEL).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { CliRun } from '../support/harness.js';
import { REPO_ROOT, waitFor } from '../support/harness.js';
import type { Host } from './hosts.js';

const CLI = path.join(REPO_ROOT, 'dist', 'cli', 'main.js');

export type HostProcessEnv = Readonly<Record<string, string>>;

export class HostProcess {
  readonly done: Promise<CliRun>;
  #stdout = '';
  #stderr = '';

  private constructor(
    readonly host: Host,
    readonly args: readonly string[],
    readonly child: ChildProcess,
  ) {
    child.stdout!.on('data', (d) => (this.#stdout += d));
    child.stderr!.on('data', (d) => (this.#stderr += d));
    this.done = new Promise<CliRun>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout: this.#stdout, stderr: this.#stderr })));
  }

  static spawn(host: Host, args: readonly string[], env: HostProcessEnv): HostProcess {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build chunkvault first (npm run build)`);
    const environment = [`HOME=${host.home}`, `TMPDIR=${path.join(host.dir, 'tmp')}`, `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`)];
    const child = spawn('ip', ['netns', 'exec', host.name, 'env', '-i', ...environment, process.execPath, CLI, ...args], { cwd: host.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    return new HostProcess(host, args, child);
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The JSON log lines written so far (pino, one object per line), others skipped. */
  logLines(): Array<Record<string, unknown>> {
    const lines: Array<Record<string, unknown>> = [];
    for (const line of this.#stderr.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a line cut short by a kill
      }
    }
    return lines;
  }

  /** Resolves once stderr holds `text`; throws if the process exits first or `timeoutMs` pass. */
  async waitForLog(text: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(`"${text}" from \`chunkvault ${this.args[0]}\` on ${this.host.name}`, () => {
      if (this.#stderr.includes(text)) return true;
      if (!this.running) throw new Error(`\`chunkvault ${this.args.join(' ')}\` on ${this.host.name} exited (${this.child.exitCode ?? this.child.signalCode}) before logging "${text}":\n${this.#stderr.slice(-3000)}`);
      return false;
    }, timeoutMs, 25);
  }

  /** Resolves with how the process ended; throws (and kills it) if it still runs after `timeoutMs`. */
  async exited(timeoutMs = 30_000): Promise<CliRun> {
    const run = await Promise.race([this.done, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), timeoutMs).unref())]);
    if (run) return run;
    await this.kill();
    throw new Error(`\`chunkvault ${this.args.join(' ')}\` on ${this.host.name} still ran after ${timeoutMs} ms:\n${this.#stderr.slice(-2000)}`);
  }

  /** SIGTERM, then waits for the process's own graceful stop; throws unless it exits 0 within `timeoutMs`. */
  async stop(timeoutMs = 30_000): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const run = await Promise.race([this.done, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), timeoutMs).unref())]);
    if (!run) {
      await this.kill();
      throw new Error(`\`chunkvault ${this.args[0]}\` on ${this.host.name} did not stop within ${timeoutMs} ms of SIGTERM:\n${this.#stderr.slice(-2000)}`);
    }
    if (run.code !== 0) throw new Error(`\`chunkvault ${this.args[0]}\` on ${this.host.name} exited ${run.code ?? run.signal} on SIGTERM:\n${run.stderr.slice(-2000)}`);
  }

  /** SIGKILL if still running; resolves once it is gone. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.done;
  }

  /** SIGKILL without waiting (process exit handlers cannot wait). */
  killNow(): void {
    if (this.running) this.child.kill('SIGKILL');
  }
}

/** Starts `chunkvault worker --config <configPath> [...extra]` on `host` and resolves once its pool takes jobs. */
export async function startWorker(host: Host, configPath: string, env: HostProcessEnv, extra: readonly string[] = []): Promise<HostProcess> {
  const worker = host.cli(['worker', '--config', configPath, ...extra], env);
  await worker.waitForLog('worker pool started');
  return worker;
}

/**
 * Starts `chunkvault serve --read-only` on `host`, listening on the host's own address (so with
 * a bearer token, which a non-loopback address requires); resolves with the process and its
 * origin, which the test process reaches over the veth pair.
 */
export async function startServer(host: Host, configPath: string, env: HostProcessEnv, token: string): Promise<{ server: HostProcess; origin: string }> {
  const server = host.cli(['serve', '--read-only', '--host', host.address, '--port', '0', '--config', configPath], { ...env, CHUNKVAULT_HTTP_TOKEN: token });
  const origin = await waitFor(`\`chunkvault serve\` on ${host.name} to listen`, () => {
    if (!server.running) throw new Error(`\`chunkvault serve\` on ${host.name} exited (${server.child.exitCode}):\n${server.stderr.slice(-3000)}`);
    return /chunkvault serving on (http:\/\/\S+?) /.exec(server.stdout)?.[1];
  }, 30_000);
  return { server, origin };
}
