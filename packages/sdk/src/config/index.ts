export { parseOptConfig, loadOptConfig, optConfigToJson, OPT_CONFIG_DEFAULTS, type OptConfig } from './opt-config.js';
export {
  expectedOptWeights, checkOptWeights, assertOptWeights, shapesOf, type OptWeightReport, type ShapeSource,
} from './opt-weights.js';
export { openOptCheckpoint, writeOptModel, type OptCheckpoint } from './opt-checkpoint.js';
