// pack.sh step: copies the three packages' built JS (package.json + dist, the CLI's bin) and the
// run-time dependency closure of @lora/sdk and @lora/cli (their "dependencies", recursively; the
// addon's build-only deps cmake-js / node-addon-api / node-api-headers are left out) into
// <app>/node_modules. Source maps and .d.ts files stay behind: nothing reads them at run time.
//   node stage-js.mjs <repo root> <app dir>
import { cpSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

const [root, app] = process.argv.slice(2);
const nm = join(app, 'node_modules');
const keep = (src) => !/\.(map|d\.ts|d\.ts\.map|tsbuildinfo)$/.test(src);
const pkgs = { '@lora/core-native': 'packages/core-native', '@lora/sdk': 'packages/sdk', '@lora/cli': 'packages/cli' };
for (const [name, dir] of Object.entries(pkgs)) {
  const to = join(nm, name);
  mkdirSync(to, { recursive: true });
  cpSync(join(root, dir, 'package.json'), join(to, 'package.json'));
  cpSync(join(root, dir, 'dist'), join(to, 'dist'), { recursive: true, filter: keep });
  if (existsSync(join(root, dir, 'bin'))) cpSync(join(root, dir, 'bin'), join(to, 'bin'), { recursive: true });
}
// Resolve each dependency the way Node would from the requiring package's folder upwards.
const find = (name, from) => {
  for (let d = from; ; d = dirname(d)) {
    const p = join(d, 'node_modules', name);
    if (existsSync(join(p, 'package.json'))) return p;
    if (d === dirname(d) || d === dirname(root)) return null;
  }
};
const copied = new Set();
const queue = [['@lora/sdk', join(root, 'packages/sdk')], ['@lora/cli', join(root, 'packages/cli')]];
const missing = [];
while (queue.length) {
  const [, dir] = queue.shift();
  const deps = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).dependencies ?? {};
  for (const dep of Object.keys(deps)) {
    if (dep.startsWith('@lora/')) continue;
    const at = find(dep, dir);
    if (!at) {
      missing.push(`${dep} (needed by ${dir})`);
      continue;
    }
    if (copied.has(at)) continue;
    copied.add(at);
    cpSync(at, join(nm, dep), { recursive: true, dereference: true, filter: (s) => keep(s) && !s.includes(`${at}/node_modules`) });
    queue.push([dep, at]);
  }
}
if (missing.length) throw new Error(`run-time dependencies not installed: ${missing.join(', ')}`);
console.log(`staged @lora/{core-native,sdk,cli} and ${copied.size} run-time dependencies: ${[...copied].map((p) => p.split('node_modules/').pop()).join(', ')}`);
