export { resolveModelDir, resolveDatasetDir, type ResolveOptions } from './resolve.js';
export type { HubProgressEvent, HubProgressListener } from './progress.js';
export { MODEL_FILES, TOKENIZER_FILES, CONFIG_FILES, ALL_FILES, filesNamed, type FileSelection } from './selection.js';
export { defaultHubCacheDir, repoFolderName, cachedSnapshotDir, type RepoType } from './cache-layout.js';
