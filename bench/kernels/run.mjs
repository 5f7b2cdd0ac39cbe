// Standalone kernel benchmark: node bench/kernels/run.mjs [--reps N] [--quick]
// (the same function `lora bench kernels` calls: runKernelBench from @lora/core-native).
import { runKernelBench } from '../../packages/core-native/dist/index.js';

const args = process.argv.slice(2);
const reps = args.includes('--reps') ? Number(args[args.indexOf('--reps') + 1]) : 3;
const quick = args.includes('--quick');
runKernelBench(quick ? { reps: 1, tokens: [1024], models: ['opt-350m'], ranks: [8] } : { reps });
