// Runs at `npm install` of @lora/core-native. Uses a binary shipped in the package when one
// matches this platform and N-API version, otherwise builds from source with cmake-js.
// Never downloads anything: cmake-js takes Node's headers from the node-api-headers package.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prebuilt = join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'lora_native.node');
const built = join(root, 'build', 'Release', 'lora_native.node');

if (process.env.LORA_SKIP_NATIVE_INSTALL === '1') {
  console.log('[lora] LORA_SKIP_NATIVE_INSTALL=1: not building the addon now');
} else if (existsSync(built)) {
  console.log(`[lora] addon already built: ${built}`);
} else if (existsSync(prebuilt) && process.env.LORA_BUILD_FROM_SOURCE !== '1') {
  console.log(`[lora] using the binary shipped in the package: ${prebuilt}`);
} else {
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.js')], { stdio: 'inherit', cwd: root });
  process.exit(r.status ?? 1);
}
