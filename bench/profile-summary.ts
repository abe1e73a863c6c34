/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time by function and by
 * package or source file, so "where does a replica's CPU go" has an answer with figures.
 *
 *   node --import tsx bench/profile-summary.ts bench/results/profiles/CPU.*.cpuprofile [--top=30]
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const files = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const top = Number(process.argv.find((a) => a.startsWith('--top='))?.slice(6) ?? 30);

function groupOf(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return url;
  const own = /\/(dist|src)\/(.+)$/.exec(url);
  return own ? own[2]! : url;
}

for (const file of files) {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0);
  const byFunction = new Map<string, number>();
  const byGroup = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const group = groupOf(url, functionName);
    const fn = `${functionName || '(anonymous)'} ${group}:${lineNumber + 1}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    byGroup.set(group, (byGroup.get(group) ?? 0) + us);
  }
  const idle = byFunction.get([...byFunction.keys()].find((k) => k.startsWith('(idle)')) ?? '') ?? 0;
  const show = (title: string, map: Map<string, number>) => {
    console.log(`\n${title}`);
    for (const [name, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / (total - idle)).toFixed(1).padStart(5)}%  ${name}`);
    }
  };
  console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled, ${((total - idle) / 1e6).toFixed(2)} s busy`);
  show('self time by package / file (share of busy time)', byGroup);
  show('self time by function', byFunction);
}

// --callers=NAME: the call paths (up to 6 frames) under which NAME spends its self time.
const callersOf = process.argv.find((a) => a.startsWith('--callers='))?.slice(10);
if (callersOf) {
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
    const parent = new Map<number, number>();
    for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const paths = new Map<string, number>();
    profile.samples.forEach((id, i) => {
      if (byId.get(id)!.callFrame.functionName !== callersOf) return;
      const frames: string[] = [];
      for (let at = parent.get(id); at !== undefined && frames.length < 6; at = parent.get(at)) {
        const { functionName, url, lineNumber } = byId.get(at)!.callFrame;
        frames.push(`${functionName || '(anon)'}@${groupOf(url, functionName)}:${lineNumber + 1}`);
      }
      const key = frames.join(' < ');
      paths.set(key, (paths.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
    });
    console.log(`\ncallers of ${callersOf}`);
    for (const [p, us] of [...paths].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${(us / 1000).toFixed(0).padStart(8)} ms  ${p}`);
  }
}

// --stalls: the longest stretches of back-to-back busy samples (the event loop did not get
// back to idle), with the functions that took most of each stretch.
if (process.argv.includes('--stalls')) {
  for (const file of files) {
    const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
    const byId = new Map(profile.nodes.map((n) => [n.id, n]));
    const stretches: Array<{ ms: number; top: Map<string, number> }> = [];
    let current: { ms: number; top: Map<string, number> } | undefined;
    profile.samples.forEach((id, i) => {
      const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
      const us = profile.timeDeltas[i] ?? 0;
      if (functionName === '(idle)') {
        if (current) stretches.push(current);
        current = undefined;
        return;
      }
      current ??= { ms: 0, top: new Map() };
      current.ms += us / 1000;
      const fn = `${functionName || '(anonymous)'} ${groupOf(url, functionName)}:${lineNumber + 1}`;
      current.top.set(fn, (current.top.get(fn) ?? 0) + us / 1000);
    });
    console.log(`\nlongest busy stretches (no idle sample in between)`);
    for (const s of stretches.sort((a, b) => b.ms - a.ms).slice(0, 5)) {
      const parts = [...s.top].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([f, ms]) => `${f} ${ms.toFixed(0)} ms`);
      console.log(`${s.ms.toFixed(0).padStart(6)} ms: ${parts.join(', ')}`);
    }
  }
}
