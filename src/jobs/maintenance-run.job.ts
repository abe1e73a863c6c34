/**
 * maintenance.run: one maintenance pass (retention, compression, scrub), put on the
 * maintenance queue by the job scheduler or by hand. Invalid job data fails without retries.
 */
import type { Job } from 'bullmq';
import { UnrecoverableError } from 'bullmq';
import type { Logger } from '../logging/logger.js';
import type { MaintenanceReport, MaintenanceService } from '../maintenance/maintenance-service.js';
import { describeIssues, maintenanceRunDataSchema } from './job-data.js';
import { jobLogger } from './job-logger.js';

export interface MaintenanceRunnerDeps {
  maintenance: MaintenanceService;
  logger: Logger;
}

export class MaintenanceRunner {
  readonly #deps: MaintenanceRunnerDeps;

  constructor(deps: MaintenanceRunnerDeps) {
    this.#deps = deps;
  }

  async handle(job: Job): Promise<MaintenanceReport> {
    const parsed = maintenanceRunDataSchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(`invalid maintenance job data: ${describeIssues(parsed.error)}`);
    const log = jobLogger(this.#deps.logger, job);
    const tasks = parsed.data.tasks;
    log.info({ tasks: tasks ?? 'all' }, 'maintenance pass starting');
    try {
      const report = await this.#deps.maintenance.runPass(tasks ? { tasks } : {});
      if (report.skipped) log.info({ reason: report.skipped }, 'maintenance pass skipped');
      return report;
    } catch (error) {
      log.error({ err: error }, 'maintenance pass failed');
      throw error;
    }
  }
}
