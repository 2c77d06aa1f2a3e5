/** Summaries of V8 CPU profiles (`--cpu-prof`): where a process spent its busy time, idle excluded. */
import fs from 'node:fs';
import path from 'node:path';
import type { Section } from './report.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

/** Where a frame's code lives, in a few words: a package, a Node module, our source, or native. */
function origin(url: string): string {
  if (url === '') return 'native';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return 'node';
  return path.relative(process.cwd(), url.replace(/^file:\/\//, ''));
}

/** The profile file written by process `pid` in `dir`, if any. */
export function profileOf(dir: string, pid: number): string | undefined {
  const name = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile') && f.split('.')[3] === String(pid));
  return name && path.join(dir, name);
}

export function profileSection(file: string, label: string, top = 15): Section {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const byFunction = new Map<string, number>();
  const byOrigin = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const frame = frames.get(id)!;
    const micros = profile.timeDeltas[i] ?? 0;
    if (frame.functionName === '(idle)') return;
    busy += micros;
    const where = origin(frame.url);
    const key = `${frame.functionName || '(anonymous)'} (${where}${frame.url ? `:${frame.lineNumber + 1}` : ''})`;
    byFunction.set(key, (byFunction.get(key) ?? 0) + micros);
    byOrigin.set(where, (byOrigin.get(where) ?? 0) + micros);
  });
  const share = (micros: number) => `${((100 * micros) / busy).toFixed(1)} %`;
  const sorted = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]);
  return {
    title: `Profile: ${label}`,
    method: `Self time by function over the whole run of that proxy process (\`--cpu-prof\`, 100 µs sampling), idle excluded: ${(busy / 1000).toFixed(0)} ms busy. Startup (module loading) is included.`,
    header: ['share of busy time', 'function (where)'],
    rows: sorted(byFunction)
      .slice(0, top)
      .map(([k, v]) => [share(v), k]),
    findings: [`by origin: ${sorted(byOrigin).slice(0, 6).map(([k, v]) => `${k} ${share(v)}`).join(', ')}`],
  };
}
