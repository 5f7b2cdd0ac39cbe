// pack.sh step: turns the op-matrix test files into plain ES modules for the kit (TypeScript's
// transpileModule, no type check), importing the shim instead of vitest and the packaged addon
// instead of the repo's lib/ and dist/. The files themselves are not edited: the kit runs what
// `npx vitest run` runs.
//   node transpile-tests.mjs <repo root> <out dir>
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const [root, out] = process.argv.slice(2);
const ts = createRequire(join(root, 'package.json'))('typescript');
const files = ['ops-helpers.ts', 'ops-matrix.test.ts', 'emu-ops.test.ts'];
mkdirSync(out, { recursive: true });
for (const f of files) {
  const src = readFileSync(join(root, 'packages/core-native/test', f), 'utf8');
  // ES2022 target: `using` declarations are lowered (Node 20 does not parse them).
  const js = ts.transpileModule(src, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext }, fileName: f }).outputText
    .replace(/from ['"]vitest['"]/g, "from './vitest-shim.mjs'")
    .replace(/from ['"]\.\.\/(lib|dist)\/index\.js['"]/g, "from '@lora/core-native'")
    .replace(/from ['"]\.\/ops-helpers\.js['"]/g, "from './ops-helpers.mjs'");
  const left = [...js.matchAll(/from ['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]).filter((p) => p !== './vitest-shim.mjs' && p !== './ops-helpers.mjs');
  if (left.length) throw new Error(`${f}: relative imports the kit does not carry: ${left.join(', ')}`);
  writeFileSync(join(out, f.replace(/\.ts$/, '.mjs')), js);
}
console.log(`transpiled ${files.join(', ')} -> ${out}`);
