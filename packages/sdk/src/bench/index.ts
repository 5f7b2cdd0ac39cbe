export * from './results.js';
export { runSweep, EMBEDDED_DEFAULTS, type SweepOptions, type SweepEvent } from './sweep.js';
export { conclusionsFor } from './conclusions.js';
export { flopsPerToken, measureMatmulGflops, measurePeak, type PeakMeasurement } from './flops.js';
export { MemorySampler, summarize } from './sampler.js';
