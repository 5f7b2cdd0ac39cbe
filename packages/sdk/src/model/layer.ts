// Moved: OPT's decoder block lives in its family file (models/opt-block.ts); this path stays for
// code written before model families.
export { LN_EPS, layerBackward, layerForward } from '../models/opt-block.js';
export type { LayerDropout } from './dropout.js';
