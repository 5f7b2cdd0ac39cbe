// Records → training examples with an account of what happened on the way, printed before step 1:
// how many were truncated at `seq` (and what share), how many lost every label token (nothing to
// learn: with responseOnly or a conversation, a prompt longer than seq) and were dropped, and the
// token count.
import { IGNORE_INDEX, type Example } from './batches.js';
import type { TrainingRecord } from './chat-records.js';
import { tokenizeTrainingRecord, type ChatTokenizerLike } from './chat-tokenize.js';

export interface DataSummary {
  records: number;
  /** Examples kept for training. */
  examples: number;
  /** Tokens of the kept examples, after truncation. */
  tokens: number;
  /** Records longer than seq (cut to seq). */
  truncated: number;
  truncatedShare: number;
  /** Records dropped because no token of theirs has a label after truncation. */
  droppedNoLabels: number;
  /** The longest record, in tokens, before truncation. */
  longest: number;
}

/** Tokenizes records for training at `seq`, dropping those with no label token left, and says what it did. */
export function prepareExamples(
  tok: ChatTokenizerLike,
  records: readonly TrainingRecord[],
  o: { seq: number; responseOnly?: boolean },
): { examples: Example[]; summary: DataSummary } {
  const examples: Example[] = [];
  let tokens = 0;
  let truncated = 0;
  let dropped = 0;
  let longest = 0;
  for (const [i, r] of records.entries()) {
    // Conversations learn from assistant turns only, whatever responseOnly says (chat-tokenize.ts).
    const full = tokenizeTrainingRecord(tok, r, { maxLength: Number.MAX_SAFE_INTEGER, responseOnly: o.responseOnly }, `record ${i}`);
    longest = Math.max(longest, full.inputIds.length);
    if (full.inputIds.length > o.seq) truncated++;
    const ex = { inputIds: full.inputIds.slice(0, o.seq), labels: full.labels.slice(0, o.seq) };
    // The model predicts token t from the ones before it, so a label at position 0 never counts.
    if (!ex.labels.some((l, t) => t > 0 && l !== IGNORE_INDEX)) {
      dropped++;
      continue;
    }
    tokens += ex.inputIds.length;
    examples.push(ex);
  }
  const n = records.length;
  return { examples, summary: { records: n, examples: examples.length, tokens, truncated, truncatedShare: n ? truncated / n : 0, droppedNoLabels: dropped, longest } };
}

/** One paragraph for people: records, tokens, truncation, drops. */
export function describeData(s: DataSummary, seq: number): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  const lines = [
    `data: ${s.records} records → ${s.examples} training examples, ${s.tokens.toLocaleString('en-US')} tokens (longest record ${s.longest} tokens)`,
    `  truncated at --seq ${seq}: ${s.truncated} of ${s.records} (${pct(s.truncatedShare)})${s.truncatedShare > 0.1 ? ' — consider a longer --seq' : ''}`,
  ];
  if (s.droppedNoLabels) lines.push(`  dropped ${s.droppedNoLabels} records with no label token left after truncation (nothing to learn from them)`);
  return lines.join('\n');
}
