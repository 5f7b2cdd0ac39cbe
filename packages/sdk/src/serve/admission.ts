// The worker's admission rule, decided on the main thread. The worker's scheduler admits FIFO while
// the batch has a free row and the KV budget has room; a request that finds the queue full and cannot
// be admitted gets 429. Asking the worker would make every new request wait for the step it is in,
// so the main thread keeps the same books: a request holds its place from submit until the worker
// reports it finished (its row and cache are free then, not when the client went away), and the
// worker, given an unbounded queue, admits exactly what this admits, in the same order.
import { hasRoom, queueFull, requestCapacity } from './scheduler.js';

export interface AdmissionLimits {
  maxBatch: number;
  maxQueue: number;
  kvBudgetBytes: number;
  maxPositions: number;
  /** The model's KV cache bytes for one position of one request (caches are linear in positions). */
  kvBytesPerPosition: number;
}

export class Admission {
  /** Admitted (in the running batch or about to be): id → KV bytes. */
  private readonly running = new Map<number, number>();
  private readonly queue: { id: number; bytes: number }[] = [];
  private kv = 0;

  constructor(private readonly l: AdmissionLimits) {}

  get runningRows(): number {
    return this.running.size;
  }
  get queueDepth(): number {
    return this.queue.length;
  }
  get kvBytes(): number {
    return this.kv;
  }
  get size(): number {
    return this.running.size + this.queue.length;
  }

  /** Takes a place for request `id` or throws its ServeError (400: can never run; 429: queue full). */
  enter(id: number, promptLength: number, maxTokens: number): void {
    const kvBytes = (c: number) => c * this.l.kvBytesPerPosition;
    const bytes = kvBytes(requestCapacity({ maxPositions: this.l.maxPositions, kvBytes }, this.l.kvBudgetBytes, promptLength, maxTokens));
    if (this.queue.length >= this.l.maxQueue && !this.fits(bytes)) throw queueFull(this.running.size, this.queue.length);
    this.queue.push({ id, bytes });
    this.admit();
  }

  /** The worker finished request `id` (whatever the reason): its place is free. */
  leave(id: number): void {
    const bytes = this.running.get(id);
    if (bytes !== undefined) {
      this.running.delete(id);
      this.kv -= bytes;
    } else {
      const i = this.queue.findIndex((q) => q.id === id);
      if (i >= 0) this.queue.splice(i, 1);
    }
    this.admit();
  }

  clear(): void {
    this.running.clear();
    this.queue.length = 0;
    this.kv = 0;
  }

  private fits(bytes: number): boolean {
    return hasRoom(this.l, this.running.size, this.kv, bytes);
  }

  private admit(): void {
    while (this.queue.length && this.fits(this.queue[0].bytes)) {
      const q = this.queue.shift()!;
      this.running.set(q.id, q.bytes);
      this.kv += q.bytes;
    }
  }
}
