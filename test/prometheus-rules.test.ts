/**
 * deploy/prometheus/alerts.yml as Prometheus itself reads it: `promtool check rules` (syntax,
 * PromQL, templates) and `promtool test rules` on alerts.test.yml (each alert fires on the
 * series it is about, with its labels and rendered annotations, and stays quiet otherwise).
 * promtool comes from Debian's prometheus package (.ci/run installs it).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { load } from 'js-yaml';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './support/harness.js';

const RULES_DIR = path.join(REPO_ROOT, 'deploy/prometheus');

interface AlertRule {
  alert: string;
  expr: string;
  annotations?: Record<string, string>;
}
interface RuleTest {
  alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }>;
}

/** promtool's exit code and output (it prints findings on stdout and stderr alike). */
function promtool(args: string[], cwd = RULES_DIR): { code: number; output: string } {
  try {
    return { code: 0, output: execFileSync('promtool', args, { cwd, encoding: 'utf8', stdio: 'pipe' }) };
  } catch (error) {
    const failed = error as { status: number; stdout: string; stderr: string };
    return { code: failed.status, output: `${failed.stdout}${failed.stderr}` };
  }
}

const rules = (load(readFileSync(path.join(RULES_DIR, 'alerts.yml'), 'utf8')) as { groups: Array<{ rules: AlertRule[] }> }).groups.flatMap((g) => g.rules);
const tests = (load(readFileSync(path.join(RULES_DIR, 'alerts.test.yml'), 'utf8')) as { tests: RuleTest[] }).tests;

describe('deploy/prometheus/alerts.yml', () => {
  it('passes promtool check rules', () => {
    const { code, output } = promtool(['check', 'rules', 'alerts.yml']);
    expect(output).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(code).toBe(0);
  });

  it('passes its unit tests (promtool test rules alerts.test.yml)', () => {
    const { code, output } = promtool(['test', 'rules', 'alerts.test.yml']);
    expect(output).toContain('SUCCESS');
    expect(code).toBe(0);
  });

  it('has a unit test of every alert firing and one of it not firing', () => {
    const cases = tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const { alert } of rules) {
      const of = cases.filter((c) => c.alertname === alert);
      expect({ alert, fires: of.some((c) => (c.exp_alerts ?? []).length > 0) }).toEqual({ alert, fires: true });
      expect({ alert, staysQuiet: of.some((c) => (c.exp_alerts ?? []).length === 0) }).toEqual({ alert, staysQuiet: true });
    }
  });

  it('gives every alert a summary, a description and runbook steps', () => {
    for (const { alert, annotations } of rules) {
      expect({ alert, annotations: Object.keys(annotations ?? {}).sort() }).toEqual({ alert, annotations: ['description', 'runbook', 'summary'] });
      expect(annotations!.runbook).toMatch(/^1\. .+\n2\. /);
    }
  });

  it('fails the unit tests when an alert stops firing: promtool test rules can fail', () => {
    // The same tests against rules whose corrupt-replica threshold can never be met.
    const dir = mkdtempSync(path.join(tmpdir(), 'chunkvault-rules-'));
    try {
      cpSync(path.join(RULES_DIR, 'alerts.test.yml'), path.join(dir, 'alerts.test.yml'));
      const rulesText = readFileSync(path.join(RULES_DIR, 'alerts.yml'), 'utf8');
      writeFileSync(path.join(dir, 'alerts.yml'), rulesText.replace('(chunkvault_replicas_corrupt) > 0', '(chunkvault_replicas_corrupt) > 1000'));
      const { code, output } = promtool(['test', 'rules', 'alerts.test.yml'], dir);
      expect(output).toContain('alertname: ChunkvaultCorruptReplicasNotRepaired');
      expect(code).toBe(1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
