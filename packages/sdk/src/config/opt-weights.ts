import { OPT_PARAMS } from '../models/opt-params.js';
import { expandParams, paramShapes } from '../models/params.js';
import type { OptConfig } from './opt-config.js';
import { assertReport, checkWeights, type ShapeSource, type WeightReport } from './weights-check.js';

export { shapesOf, type ShapeSource } from './weights-check.js';

/**
 * Every tensor an OPT checkpoint must hold, named as OPTModel names them (`decoder.…`), with its
 * shape, from OPT's parameter table. Linear weights are (out, in) as in torch. Positions have 2
 * extra rows (OPT's offset).
 */
export function expectedOptWeights(c: OptConfig): Map<string, number[]> {
  return paramShapes(expandParams(OPT_PARAMS, c));
}

export type OptWeightReport = WeightReport;

/** Matches a checkpoint against an OPT config (see checkWeights). */
export function checkOptWeights(config: OptConfig, source: ShapeSource): OptWeightReport {
  return checkWeights(expectedOptWeights(config), source, { lmHead: [config.vocabSize, config.wordEmbedProjDim], numLayers: config.numHiddenLayers });
}

/** checkOptWeights, throwing one error that lists every problem. */
export function assertOptWeights(config: OptConfig, source: ShapeSource, where = 'checkpoint'): OptWeightReport {
  return assertReport(checkOptWeights(config, source), where);
}
