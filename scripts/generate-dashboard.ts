/**
 * `npm run dashboard`: writes deploy/grafana/chunkvault.json from scripts/grafana-dashboard.ts.
 * test/grafana-dashboard.test.ts fails when the committed file differs.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildDashboard, DASHBOARD_FILE, serializeDashboard } from './grafana-dashboard.js';

const file = path.resolve(import.meta.dirname, '..', DASHBOARD_FILE);
await mkdir(path.dirname(file), { recursive: true });
await writeFile(file, serializeDashboard(buildDashboard()));
process.stdout.write(`wrote ${DASHBOARD_FILE}\n`);
