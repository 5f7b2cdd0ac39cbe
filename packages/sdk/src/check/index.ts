export { runCheck, defaultTolerance, type CheckOptions, type CheckReport, type TensorComparison } from './check.js';
