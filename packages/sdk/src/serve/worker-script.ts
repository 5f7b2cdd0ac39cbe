// Starts the model's worker thread. Built (dist/serve/*.js), the worker is its sibling
// worker-main.js. From the TypeScript sources (vitest runs src/), it is worker-main.ts, started
// through module hooks that transpile TypeScript (ts-source-loader.mjs), so tests run the same
// worker code as the sources they import.
import { Worker } from 'node:worker_threads';

import type { WorkerInit } from './worker-protocol.js';

const here = import.meta.url;

// A CommonJS stub: registers the hooks in the worker itself (hooks do not cross into workers on
// Node 20), then imports the entry.
const FROM_SOURCES = `
const { register } = require('node:module');
const { workerData } = require('node:worker_threads');
register(workerData.loader);
import(workerData.entry).catch((e) => { process.nextTick(() => { throw e; }); });
`;

export function startModelWorker(init: WorkerInit): Worker {
  if (!here.endsWith('.ts')) return new Worker(new URL('./worker-main.js', here), { workerData: { init } });
  const loader = new URL('./ts-source-loader.mjs', here).href;
  const entry = new URL('./worker-main.ts', here).href;
  return new Worker(FROM_SOURCES, { eval: true, workerData: { init, loader, entry } });
}
