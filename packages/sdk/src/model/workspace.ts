// Moved: OPT's workspace and buffer plan live in its family files (models/opt-workspace.ts); this
// path stays for code written before model families.
export { createWorkspace, planLayer, type LayerCache, type LayerPlan, type Workspace } from '../models/opt-workspace.js';
