// Runs the op-matrix test files (transpiled to plain JS by pack.sh) without vitest, through
// vitest-shim.mjs: every registered test in order, one line each, and a JSON summary with the
// per-case lines the files print ("[cuda] ok ...", "cpu matmul_xwt ...: nmse ... ok").
//
//   node run-tests.mjs --json out.json [--filter REGEX] file.mjs...
// Exit 0 when every test that ran passed (and at least one ran), 1 otherwise.
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

import { registered } from './vitest-shim.mjs';

const { values, positionals } = parseArgs({ options: { json: { type: 'string' }, filter: { type: 'string' } }, allowPositionals: true });
const filter = values.filter ? new RegExp(values.filter) : null;

// Count the case lines the files print, whatever test prints them.
const cases = { ok: 0, fail: 0, unsupported: 0, failures: [] };
const log = console.log.bind(console);
console.log = (...a) => {
  const s = a.map(String).join(' ');
  if (/^\[(cuda|emu[^\]]*)\] ok /.test(s) || /^(cpu|emu|cuda) .*: nmse .* ok$/.test(s)) cases.ok++;
  else if (/^\[(cuda|emu[^\]]*)\] FAIL /.test(s) || /^(cpu|emu|cuda) .*: nmse .* FAIL$/.test(s)) {
    cases.fail++;
    if (cases.failures.length < 50) cases.failures.push(s.slice(0, 300));
  } else if (/not supported/.test(s)) cases.unsupported++;
  log(...a);
};

const results = [];
for (const file of positionals) {
  const t0 = performance.now();
  try {
    await import(pathToFileURL(resolve(file)).href);
  } catch (e) {
    results.push({ file, name: '(import)', status: 'fail', ms: 0, error: String(e?.stack ?? e).slice(0, 2000) });
    log(`FAIL ${file}: import failed: ${e?.message ?? e}`);
    continue;
  }
  log(`# ${file}: imported in ${(performance.now() - t0).toFixed(0)} ms`);
  for (const t of registered()) {
    if (t.skip || (filter && !filter.test(t.name))) {
      results.push({ file, name: t.name, status: 'skip', ms: 0 });
      continue;
    }
    const s = performance.now();
    try {
      await t.fn();
      const ms = Math.round(performance.now() - s);
      results.push({ file, name: t.name, status: 'pass', ms });
      log(`PASS ${t.name} (${ms} ms)`);
    } catch (e) {
      const ms = Math.round(performance.now() - s);
      results.push({ file, name: t.name, status: 'fail', ms, error: String(e?.message ?? e).slice(0, 2000) });
      log(`FAIL ${t.name} (${ms} ms): ${String(e?.message ?? e).slice(0, 2000)}`);
    }
  }
}
const count = (st) => results.filter((r) => r.status === st).length;
const summary = { passed: count('pass'), failed: count('fail'), skipped: count('skip'), cases, tests: results };
log(`# ${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped; case lines: ${cases.ok} ok, ${cases.fail} FAIL, ${cases.unsupported} not supported`);
if (values.json) writeFileSync(values.json, `${JSON.stringify(summary, null, 2)}\n`);
process.exitCode = summary.failed === 0 && summary.passed > 0 ? 0 : 1;
