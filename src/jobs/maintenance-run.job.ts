/**
 * maintenance.run: one maintenance pass (retention, compression, scrub), put on the
 * maintenance queue by the job scheduler or by hand. Invalid job data fails without retries.
 */
import type { Job } from 'bullmq';
import type { Logger } from '../logging/logger.js';
import type { MaintenanceReport, MaintenanceService } from '../maintenance/maintenance-service.js';
import type { MaintenanceRunData } from './job-data.js';
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

  async handle(job: Job, data: MaintenanceRunData): Promise<MaintenanceReport> {
    const log = jobLogger(this.#deps.logger, job);
    const tasks = data.tasks;
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
