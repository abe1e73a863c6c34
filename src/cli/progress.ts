/**
 * Progress of a long CLI operation on stderr (stdout stays for the result, JSON or text):
 * a bar on a terminal, plain `label: done/total (pct%)` lines every few seconds otherwise
 * (logs, CI), so a pipeline's output is never littered with carriage returns.
 */
import { createRequire } from 'node:module';

export interface Progress {
  /** Sets how many of `total` units are done (and `total`, when it was unknown at start). */
  update(done: number, total?: number): void;
  stop(): void;
}

const PLAIN_EVERY_MS = 2000;

export function startProgress(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (stream.isTTY) {
    // Loaded only for a terminal: the commands that show progress are loaded by every command.
    const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof import('cli-progress');
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {percentage}% | {value}/{total} | {eta_formatted} left`, stream, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0);
    return {
      update: (done, newTotal) => {
        if (newTotal !== undefined && newTotal !== bar.getTotal()) bar.setTotal(newTotal);
        bar.update(done);
      },
      stop: () => bar.stop(),
    };
  }
  let lastLine = 0;
  let done = 0;
  const line = () => {
    const pct = total > 0 ? ` (${Math.floor((100 * done) / total)}%)` : '';
    stream.write(`${label}: ${done}/${total}${pct}\n`);
    lastLine = Date.now();
  };
  line();
  return {
    update: (value, newTotal) => {
      done = value;
      if (newTotal !== undefined) total = newTotal;
      if (Date.now() - lastLine >= PLAIN_EVERY_MS) line();
    },
    stop: () => line(),
  };
}
