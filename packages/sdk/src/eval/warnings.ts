/**
 * Sentences that keep an evaluation's zeros from passing for a measurement. An all-NaN adapter used to
 * give "4 empty outputs, BLEU 0.00" and exit 0: nothing said the scores measured no output at all.
 * The summary carries these (summary.json's `warnings`) and `lora eval` prints them.
 */

/** What the warnings look at: a summary's counts and metrics, and each example's output and error. */
export interface WarningInput {
  examples: ReadonlyArray<{ output: string; error?: string; errorCode?: string }>;
  emptyOutputs: number;
  metrics: Record<string, number>;
}

export function evalWarnings({ examples, emptyOutputs, metrics }: WarningInput): string[] {
  const out: string[] = [];
  const n = examples.length;
  const of = (k: number) => `${k} of ${n}`;
  const nonFinite = examples.filter((e) => e.errorCode === 'E_NON_FINITE' || (e.error !== undefined && /non-finite/i.test(e.error))).length;
  if (nonFinite > 0) {
    out.push(`${of(nonFinite)} generations stopped on non-finite (NaN/Inf) logits: the model or adapter is broken, and those examples' scores of 0 measure nothing`);
  }
  // Failed generations are empty too; they are reported on their own (generationErrorNote).
  const emptyGenerated = examples.filter((e) => e.error === undefined && e.output.trim() === '').length;
  if (n > 0 && emptyOutputs === n) {
    out.push(`every output is empty (${n} of ${n}): BLEU/ROUGE/METEOR of 0 say nothing about quality - check the adapter, the stop tokens and --max-new-tokens`);
  } else if (emptyGenerated > 0) {
    out.push(`${of(emptyGenerated)} outputs ${emptyGenerated === 1 ? 'is' : 'are'} empty (the model stopped at once), scored 0 on every metric`);
  }
  const broken = Object.entries(metrics).filter(([, v]) => !Number.isFinite(v)).map(([k]) => k);
  if (broken.length) out.push(`metric${broken.length === 1 ? '' : 's'} ${broken.join(', ')} came out non-finite (written as null)`);
  return out;
}
