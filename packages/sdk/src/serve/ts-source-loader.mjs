// Module hooks for the model's worker thread when the SDK runs from its TypeScript sources (vitest
// runs src/, and the tests must exercise the worker path): `./x.js` imports resolve to `./x.ts`, and
// .ts files are transpiled with the repository's own TypeScript (transpileModule: the sources are
// isolatedModules, so a file compiles alone). Transpiled files are cached by content hash in the
// OS temp folder: a cold worker start took 3.4 s here (loading typescript and ~55 files), a warm one
// 0.34 s. Built packages (dist/) never use this: their worker is plain JavaScript.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const cacheDir = join(tmpdir(), 'lora-ts-worker-cache');
let ts;

export async function resolve(specifier, context, next) {
  if (context.parentURL?.endsWith('.ts') && specifier.startsWith('.') && specifier.endsWith('.js')) {
    const js = new URL(specifier, context.parentURL);
    const source = new URL(`${js.href.slice(0, -3)}.ts`);
    if (!existsSync(fileURLToPath(js)) && existsSync(fileURLToPath(source))) return { url: source.href, format: 'module', shortCircuit: true };
  }
  return next(specifier, context);
}

export async function load(url, context, next) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context);
  const path = fileURLToPath(url);
  const text = readFileSync(path, 'utf8');
  const cached = join(cacheDir, `${createHash('sha256').update(path).update('\0').update(text).digest('hex')}.js`);
  if (existsSync(cached)) return { format: 'module', source: readFileSync(cached, 'utf8'), shortCircuit: true };
  ts ??= (await import('typescript')).default;
  const out = ts.transpileModule(text, {
    fileName: path,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true, inlineSourceMap: true, inlineSources: true },
  }).outputText;
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${cached}.${process.pid}-${Math.random().toString(36).slice(2)}`;
  writeFileSync(tmp, out);
  renameSync(tmp, cached); // atomic: concurrent workers never read half a file
  return { format: 'module', source: out, shortCircuit: true };
}
