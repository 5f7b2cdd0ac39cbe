// Finds and loads the compiled addon, and says which file it took and why the others were not.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { NativeAddon } from './native.js';

export type AddonVariant = 'env' | 'source-build' | 'prebuilt';

export interface LoadedAddon {
  addon: NativeAddon;
  path: string;
  variant: AddonVariant;
  /** Candidates looked at before the one taken, with why each was skipped. */
  skipped: { path: string; reason: string }[];
}

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), '..');

function candidates(): { path: string; variant: AddonVariant }[] {
  const list: { path: string; variant: AddonVariant }[] = [];
  if (process.env.LORA_NATIVE_PATH) list.push({ path: process.env.LORA_NATIVE_PATH, variant: 'env' });
  list.push({ path: join(packageRoot, 'build', 'Release', 'lora_native.node'), variant: 'source-build' });
  list.push({ path: join(packageRoot, 'prebuilds', `${process.platform}-${process.arch}`, 'lora_native.node'), variant: 'prebuilt' });
  return list;
}

let loaded: LoadedAddon | undefined;

/** Loads the addon once; throws an Error with code ERR_LORA_NO_ADDON listing what was tried. */
export function loadAddon(): LoadedAddon {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const skipped: { path: string; reason: string }[] = [];
  for (const c of candidates()) {
    if (!existsSync(c.path)) {
      skipped.push({ path: c.path, reason: 'not found' });
      continue;
    }
    let addon: NativeAddon;
    try {
      addon = require(c.path) as NativeAddon;
      installDisposeSymbol(addon);
    } catch (e) {
      skipped.push({ path: c.path, reason: (e as Error).message.split('\n')[0] });
      continue;
    }
    checkEnvironment(addon);
    loaded = { addon, path: c.path, variant: c.variant, skipped };
    return loaded;
  }
  const err = new Error(
    'lora: the native addon could not be loaded. Tried:\n' +
      skipped.map((s) => `  ${s.path}: ${s.reason}`).join('\n') +
      '\nBuild it with `npm run build -w @lora/core-native` (needs cmake and a C++17 compiler).',
  ) as Error & { code: string };
  err.code = 'ERR_LORA_NO_ADDON';
  throw err;
}

/**
 * Environment variables the addon reads, checked before any op runs: LORA_NUM_THREADS must be an
 * integer in [1, maxNumThreads()] (4 per logical core, at most 256). A bad value throws
 * ERR_LORA_INVALID_ARG naming it (the addon alone would warn and fall back).
 */
function checkEnvironment(addon: NativeAddon): void {
  const raw = process.env.LORA_NUM_THREADS;
  if (raw === undefined || raw === '') return;
  const max = typeof addon.maxNumThreads === 'function' ? (addon.maxNumThreads as () => number)() : 256;
  const n = /^\d{1,4}$/.test(raw) ? Number(raw) : Number.NaN;
  if (n >= 1 && n <= max) return;
  const err = new Error(
    `lora: LORA_NUM_THREADS must be an integer in [1, ${max}] (4 per logical core, at most 256), got '${raw.slice(0, 32)}'`,
  ) as Error & { code: string; arg: string };
  err.code = 'ERR_LORA_INVALID_ARG';
  err.arg = 'LORA_NUM_THREADS';
  throw err;
}

// `using t = Tensor.empty(...)` disposes at scope exit.
function installDisposeSymbol(addon: NativeAddon): void {
  const proto = addon.Tensor.prototype as unknown as Record<symbol, unknown>;
  if (Symbol.dispose && !proto[Symbol.dispose]) {
    Object.defineProperty(proto, Symbol.dispose, {
      value: function dispose(this: { dispose(): void }) {
        this.dispose();
      },
    });
  }
}
