// Before `npm pack`: copy the repository's cuda/ sources into the package so that a tarball
// install can build the CUDA and emulator backends without the monorepo around it, and ship the
// binary built here as a prebuilt for this platform (used at install unless
// LORA_BUILD_FROM_SOURCE=1, so installs work even where install scripts are not allowed to build).
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const repoCuda = join(root, '..', '..', 'cuda');
const dest = join(root, 'cuda');
if (existsSync(repoCuda)) {
  rmSync(dest, { recursive: true, force: true });
  cpSync(repoCuda, dest, { recursive: true, filter: (p) => !/[/\\]build([/\\]|$)/.test(p) });
}
const built = join(root, 'build', 'Release', 'lora_native.node');
const prebuiltDir = join(root, 'prebuilds', `${process.platform}-${process.arch}`);
rmSync(join(root, 'prebuilds'), { recursive: true, force: true });
if (existsSync(built)) {
  mkdirSync(prebuiltDir, { recursive: true });
  cpSync(built, join(prebuiltDir, 'lora_native.node'));
}
