// The packages install the way users get them: `npm pack` tarballs of core-native, sdk and cli go
// into an empty project with no access to our packages on a registry; the addon is built from
// source at install (LORA_BUILD_FROM_SOURCE=1; CUDA off to keep the test short — the CUDA build is
// covered by the monorepo build), and then `import '@lora/sdk'` and `npx lora env` work.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const work = mkdtempSync(join(tmpdir(), 'lora-pack-'));

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('npm pack tarballs', () => {
  it('install into an empty project, build the addon, and run', () => {
    const env: NodeJS.ProcessEnv = { ...process.env, LORA_CUDA: 'off', LORA_BUILD_FROM_SOURCE: '1', npm_config_update_notifier: 'false' };
    delete env.LORA_NATIVE_PATH; // the installed package must find its own binary
    execFileSync('npm', ['pack', '-w', '@lora/core-native', '-w', '@lora/sdk', '-w', '@lora/cli', '--pack-destination', work], {
      cwd: repo,
      env,
      stdio: 'pipe',
    });
    const tarballs = readdirSync(work).filter((f) => f.endsWith('.tgz'));
    expect(tarballs.sort()).toEqual(['lora-cli-0.1.0.tgz', 'lora-core-native-0.1.0.tgz', 'lora-sdk-0.1.0.tgz']);
    const proj = join(work, 'proj');
    execFileSync('mkdir', ['-p', proj]);
    writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'pack-check', version: '1.0.0', type: 'module', private: true }));
    execFileSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', ...tarballs.map((t) => join(work, t))], {
      cwd: proj,
      env,
      stdio: 'pipe',
    });
    const imported = execFileSync(process.execPath, ['-e', "import('@lora/sdk').then(m => console.log(Object.keys(m).length > 0 ? 'sdk ok' : 'empty'))"], {
      cwd: proj,
      encoding: 'utf8',
    });
    expect(imported.trim()).toBe('sdk ok');
    const out = execFileSync('npx', ['--no-install', 'lora', 'env'], { cwd: proj, encoding: 'utf8', env });
    expect(out).toMatch(/^lora environment/);
    expect(out).toContain(join(proj, 'node_modules', '@lora', 'core-native', 'build', 'Release', 'lora_native.node'));
    expect(out).toMatch(/\[source-build\]/);
  });
});
