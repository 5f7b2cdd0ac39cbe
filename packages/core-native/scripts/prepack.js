// Before `npm pack`: copy the repository's cuda/ sources into the package so that a tarball
// install can build the CUDA and emulator backends without the monorepo around it.
import { cpSync, existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const repoCuda = join(root, '..', '..', 'cuda');
const dest = join(root, 'cuda');
if (existsSync(repoCuda)) {
  rmSync(dest, { recursive: true, force: true });
  cpSync(repoCuda, dest, { recursive: true, filter: (p) => !p.includes('/build') });
}
