/**
 * One command per maintenance task (`cleanup`, `compress`, `scrub`), made from the task list:
 * each runs a pass of its task and prints what the task says (`--json`: its result as is).
 */
import type { Command } from 'commander';
import { QUEUE_NAMES } from '../../jobs/job-table.js';
import type { MaintenanceTask } from '../../maintenance/maintenance-task.js';
import { MAINTENANCE_TASK_LIST } from '../../maintenance/maintenance-tasks.js';
import type { MaintenanceTaskName } from '../../maintenance/maintenance-service.js';
import { withVault } from '../cli-support.js';
import { declareContract, printJson } from '../command-contract.js';
import { startProgress } from '../progress.js';

interface TaskCommandOptions {
  dryRun?: boolean;
  now?: boolean;
  json?: boolean;
}

export function registerMaintenance(program: Command): void {
  for (const task of MAINTENANCE_TASK_LIST) registerTask(program, task);
}

function registerTask(program: Command, task: MaintenanceTask<MaintenanceTaskName>): void {
  const { cli } = task;
  const command = program.command(cli.command).description(cli.description);
  if (task.dryRun === 'plan') command.option('--dry-run', cli.dryRunHelp ?? 'show what a real pass would do, and change nothing');
  if (cli.runs === 'queued') command.option('--now', cli.nowHelp ?? 'run the pass in this process and print its report');
  const failed = [cli.exitCodeHelp, 'another maintenance pass was running', 'a listing or read failed (the pass stops: fail closed)'];
  declareContract(command, {
    json: cli.runs === 'queued' ? `without --now {queued: true, jobId}; with --now ${cli.jsonShape}` : cli.jsonShape,
    exitCodes: { failed: `${failed.filter((text) => text !== undefined).join(', ')}, or Redis or a storage backend could not be reached` },
  });
  command.action((options: TaskCommandOptions, self: Command) =>
    withVault(self, async (vault) => {
      if (cli.runs === 'queued' && !options.now) {
        const job = await vault.queue(QUEUE_NAMES.maintenance).add('maintenance.run', { tasks: [task.name] });
        if (options.json) printJson({ queued: true, jobId: job.id });
        else process.stdout.write(`${task.name} queued as job ${job.id}\n`);
        return;
      }
      const progress = cli.progressLabel ? startProgress(cli.progressLabel, 0) : undefined;
      const report = await vault.maintenance
        .runPass({ tasks: [task.name], dryRun: options.dryRun ?? false, onProgress: progress && ((done, total) => progress.update(done, total)) })
        .finally(() => progress?.stop());
      if (report.skipped) throw new Error(`${report.skipped}; try again later`);
      const result = report[task.name];
      if (options.json) printJson(result);
      else process.stdout.write(cli.print(result));
      return cli.exitCode?.(result) ?? 0;
    }),
  );
}
