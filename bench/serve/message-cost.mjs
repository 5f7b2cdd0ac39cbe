// What a token costs the main thread when it crosses from the model's worker thread: one message per
// token vs one message per step (all rows' tokens of a step together, what lora serve sends). The
// worker posts `steps` steps of `rows` tokens in the shapes worker-protocol.ts uses; the main thread's
// busy time (performance.eventLoopUtilization) while receiving them, per token, is the cost.
//
//   node bench/serve/message-cost.mjs [--rows 16] [--steps 2000]
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';

const { values } = parseArgs({ options: { rows: { type: 'string', default: '16' }, steps: { type: 'string', default: '2000' } } });
const rows = +values.rows;
const steps = +values.steps;

const WORKER = `
const { parentPort, workerData: { rows, steps, perToken } } = require('node:worker_threads');
const counters = { queueDepth: 0, runningRows: rows, kvBytesInUse: 1 << 20 };
parentPort.once('message', () => {
  for (let s = 0; s < steps; s++) {
    if (perToken) {
      for (let r = 0; r < rows; r++) parentPort.postMessage({ t: 'events', events: [{ t: 'tokens', pairs: [r, s] }], counters });
    } else {
      const pairs = [];
      for (let r = 0; r < rows; r++) pairs.push(r, s);
      parentPort.postMessage({ t: 'events', events: [{ t: 'tokens', pairs }, { t: 'step', rows, tokens: rows, ms: 1 }], counters });
    }
  }
  parentPort.postMessage('end');
});
`;

async function run(perToken) {
  const w = new Worker(WORKER, { eval: true, workerData: { rows, steps, perToken } });
  await new Promise((r) => w.once('online', r));
  let tokens = 0;
  const elu0 = performance.eventLoopUtilization();
  const t0 = performance.now();
  await new Promise((resolve) => {
    w.on('message', (m) => {
      if (m === 'end') return resolve();
      for (const e of m.events) if (e.t === 'tokens') tokens += e.pairs.length / 2;
    });
    w.postMessage('go');
  });
  const wall = performance.now() - t0;
  const elu = performance.eventLoopUtilization(elu0);
  await w.terminate();
  return { perToken, tokens, wallMs: +wall.toFixed(1), mainBusyMs: +elu.active.toFixed(1), mainUsPerToken: +((1000 * elu.active) / tokens).toFixed(2) };
}

for (let rep = 0; rep < 2; rep++) for (const perToken of [true, false]) console.log(JSON.stringify({ rows, steps, ...(await run(perToken)) }));
