// Server-sent events as OpenAI streams them: `data: <json>\n\n` per chunk, `data: [DONE]\n\n` at the
// end. A write that fills the socket's buffer marks the stream not ready; the scheduler then skips
// the row's decode steps until the client has read (backpressure), instead of buffering tokens.
import type { ServerResponse } from 'node:http';

export function startEventStream(res: ServerResponse): void {
  if (res.headersSent) return;
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
}

export function sendEvent(res: ServerResponse, data: unknown): void {
  if (res.destroyed || res.writableEnded) return;
  if (!res.headersSent) startEventStream(res);
  res.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
}

export function endEventStream(res: ServerResponse): void {
  if (res.destroyed || res.writableEnded) return;
  res.end('data: [DONE]\n\n');
}

/** Whether more can be written now without growing the socket's buffer past its high-water mark. */
export const streamReady = (res: ServerResponse) => !res.writableNeedDrain;
