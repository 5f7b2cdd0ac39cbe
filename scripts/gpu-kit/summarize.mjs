// run.sh's last step: gathers steps/*.json and the files the steps wrote into <out>/summary.json
// (written to a temp file, then renamed), and prints the headline figures.
//   node summarize.mjs <out> <kit> <gpu line> <quick 0|1> <seconds>
import { existsSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [out, kit, gpu, quick, seconds] = process.argv.slice(2);
const read = (f) => {
  try {
    return JSON.parse(readFileSync(join(out, f), 'utf8'));
  } catch {
    return null;
  }
};
const ORDER = ['env', 'ops-cuda', 'ops-matrix', 'sanitize-memcheck', 'sanitize-racecheck', 'sanitize-synccheck', 'check', 'bench', 'train-step', 'race'];
const steps = readdirSync(join(out, 'steps')).filter((f) => f.endsWith('.json')).map((f) => read(join('steps', f)))
  .filter(Boolean).sort((a, b) => ORDER.indexOf(a.name) - ORDER.indexOf(b.name));
const tail = (name) => (existsSync(join(out, 'steps', `${name}.log`)) ? readFileSync(join(out, 'steps', `${name}.log`), 'utf8') : '');

for (const s of steps) {
  const text = tail(s.name);
  if (s.name.startsWith('ops-') || s.name.startsWith('sanitize-')) {
    const r = read(`${s.name}.json`);
    if (r) s.detail = { tests_passed: r.passed, tests_failed: r.failed, tests_skipped: r.skipped, cases_ok: r.cases.ok, cases_fail: r.cases.fail, cases_unsupported: r.cases.unsupported, failures: r.cases.failures.concat(r.tests.filter((t) => t.status === 'fail').map((t) => `${t.name}: ${t.error}`)).slice(0, 20) };
    if (s.name === 'ops-cuda') s.detail = { ...s.detail, target: /LORA_OPS_TARGET=cuda/.test(s.command) ? 'cuda' : 'emu (no GPU)' };
  }
  if (s.name.startsWith('sanitize-') && text) {
    const m = text.match(/ERROR SUMMARY: (\d+) error/);
    s.detail = { ...s.detail, sanitizer_errors: m ? Number(m[1]) : null };
  }
  if (s.name === 'check') {
    // One section per `lora check` run, each opened by check_all's "== lora check ..." line.
    const runs = text.split(/^(?=== lora check )/m).filter((t) => t.startsWith('== lora check')).map((t) => {
      const [, fixture, device, dtype] = t.match(/^== lora check (\S+) --device (\S+) --dtype (\S+)/);
      const v = t.match(/^(\d+) passed, (\d+) failed$/m);
      return { fixture, device, dtype, ...(v ? { passed: +v[1], failed: +v[2] } : { error: t.split('\n').filter(Boolean).slice(1, 4).join(' ').slice(0, 300) }) };
    });
    s.detail = { runs };
  }
  if (s.name === 'bench') {
    const r = read('bench/results.json');
    if (r) s.detail = { device: r.machine?.deviceName ?? r.machine?.backend, peak_gflops: r.machine?.peakGflops, runs: (r.runs ?? []).map((x) => ({ label: x.label, final_loss: x.finalLoss, runtime_s: x.runtimeSec, tokens_per_s: x.tokensPerSec })) };
  }
  if (s.name === 'train-step' || s.name === 'race') {
    const r = read(`${s.name}.json`);
    if (r) s.detail = r;
  }
  if (s.status !== 'pass' && !s.reason) s.output_tail = text.split('\n').slice(-15).join('\n');
}
const counts = steps.reduce((c, s) => ((c[s.status] = (c[s.status] ?? 0) + 1), c), {});
const summary = {
  kit: JSON.parse(readFileSync(join(kit, 'kit-info.json'), 'utf8')),
  finished_at: new Date().toISOString(),
  mode: quick === '1' ? 'quick' : 'full',
  seconds: Number(seconds),
  gpu: gpu === 'yes' ? { usable: true, name: read('env.json')?.cuda?.deviceName ?? null } : { usable: false, reason: gpu.replace(/^no: /, '') },
  counts,
  // With a GPU every step must pass (quick mode's planned skip of ops-matrix aside); without one,
  // the CUDA steps' "no-gpu" and skips are the expected answer.
  ok: steps.every((s) => s.status === 'pass' || (s.status === 'skipped' && /^quick mode/.test(s.reason ?? '')) ||
    (gpu !== 'yes' && (s.status === 'no-gpu' || s.status === 'skipped'))),
  steps,
};
const file = join(out, 'summary.json');
writeFileSync(`${file}.tmp`, `${JSON.stringify(summary, null, 2)}\n`);
renameSync(`${file}.tmp`, file);
console.log(`summary: ${steps.map((s) => `${s.name}=${s.status}`).join(' ')}`);
const ours = summary.steps.find((s) => s.name === 'train-step')?.detail?.ours ?? [];
for (const o of ours.filter((x) => !x.error)) console.log(`  step r=${o.r}: ${o.tokens_per_s} tokens/s, ${o.pct_of_peak}% of ${o.peak_gflops} GFLOP/s, peak ${o.peak_device_mb} MiB`);
