/** What resolving a model or dataset reports, in order: resolve, then cache-hit or files, then done. */
export type HubProgressEvent =
  | { type: 'resolve'; repo: string; repoType: 'model' | 'dataset'; revision: string }
  | { type: 'cache-hit'; repo: string; dir: string }
  | { type: 'file-start'; repo: string; file: string; index: number; count: number }
  | { type: 'file-progress'; repo: string; file: string; loaded: number; total: number | undefined }
  | { type: 'file-done'; repo: string; file: string; index: number; count: number }
  | { type: 'done'; repo: string; dir: string; commit: string };

export type HubProgressListener = (event: HubProgressEvent) => void;

/**
 * Wraps fetch so that file downloads (`/resolve/` URLs) report bytes as they stream in;
 * @huggingface/hub has no progress callback of its own, but it lets us pass the fetch it uses.
 */
export function fetchWithProgress(inner: typeof fetch, onBytes: (loaded: number, total: number | undefined) => void): typeof fetch {
  return async (input, init) => {
    const response = await inner(input, init);
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    // The hub client probes each file with a 1-byte range request first; only the real transfer counts.
    const probe = new Headers(init?.headers).get('range') === 'bytes=0-0';
    if (!response.body || !url.includes('/resolve/') || probe) return response;
    const length = Number(response.headers.get('content-length'));
    const total = Number.isFinite(length) && length > 0 ? length : undefined;
    let loaded = 0;
    const counted = response.body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          loaded += chunk.byteLength;
          onBytes(loaded, total);
          controller.enqueue(chunk);
        },
      }),
    );
    return new Response(counted, { status: response.status, statusText: response.statusText, headers: response.headers });
  };
}
