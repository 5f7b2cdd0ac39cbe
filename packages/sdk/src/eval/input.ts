/**
 * Reading prediction/reference files: JSON Lines, one object per line with `prediction` and either
 * `reference` (a string) or `references` (a non-empty list of strings), as `lora eval score` takes.
 *
 * Bytes that are not valid UTF-8 are an error naming the line and byte offset, unless
 * `invalidUtf8: 'replace'` is given: then they become U+FFFD and a warning names each line affected.
 * Blank lines are skipped (they hold no example). Every other problem is an E_EVAL_INPUT error that
 * names the line number; nothing is dropped silently.
 */
import { EvalError } from './errors.js';
import type { ScoreExample } from './score.js';

export interface ParsedInput {
  examples: Array<ScoreExample & { line: number }>;
  warnings: string[];
}

export interface ParseInputOptions {
  /** 'error' (default) or 'replace' (U+FFFD, with a warning per line). */
  invalidUtf8?: 'error' | 'replace';
  /** Name used in messages. Default 'input'. */
  source?: string;
}

const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
const lossy = new TextDecoder('utf-8', { fatal: false, ignoreBOM: false });

/** Byte offset of the first invalid UTF-8 sequence in `b`, or -1. */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    let n: number;
    let min: number;
    if (c < 0x80) {
      i++;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      min = 0x10000;
    } else return i;
    if (i + n >= b.length) return i; // truncated sequence
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const d = b[i + k];
      if (d === undefined || (d & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (d & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return -1;
}

function decodeLine(bytes: Uint8Array, lineNo: number, opts: ParseInputOptions, warnings: string[]): string {
  try {
    return strict.decode(bytes);
  } catch {
    const at = firstInvalidUtf8(bytes);
    const where = `${opts.source ?? 'input'}:${lineNo}: bytes that are not valid UTF-8${at >= 0 ? ` at byte ${at} of the line` : ''}`;
    if (opts.invalidUtf8 === 'replace') {
      warnings.push(`${where}; replaced with U+FFFD`);
      return lossy.decode(bytes);
    }
    throw new EvalError('E_EVAL_INPUT', `${where} (re-encode the file as UTF-8, or pass --replace-invalid-utf8 to substitute U+FFFD)`);
  }
}

/** Parses a JSONL buffer of predictions and references. */
export function parseScoreInput(data: Uint8Array, options: ParseInputOptions = {}): ParsedInput {
  const src = options.source ?? 'input';
  const warnings: string[] = [];
  const examples: ParsedInput['examples'] = [];
  let start = 0;
  let lineNo = 0;
  // A UTF-8 byte-order mark at the very start is not part of the first line.
  if (data.length >= 3 && data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf) start = 3;
  while (start <= data.length) {
    let end = data.indexOf(10, start);
    if (end < 0) end = data.length;
    lineNo++;
    let bytes = data.subarray(start, end);
    if (bytes.length > 0 && bytes[bytes.length - 1] === 13) bytes = bytes.subarray(0, bytes.length - 1);
    start = end + 1;
    const text = decodeLine(bytes, lineNo, options, warnings);
    if (text.trim().length === 0) continue;
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch (e) {
      throw new EvalError('E_EVAL_INPUT', `${src}:${lineNo}: malformed JSON (${(e as Error).message})`);
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
      throw new EvalError('E_EVAL_INPUT', `${src}:${lineNo}: expected a JSON object with "prediction" and "reference"/"references"`);
    }
    const o = obj as Record<string, unknown>;
    if (!('prediction' in o)) throw new EvalError('E_EVAL_INPUT', `${src}:${lineNo}: missing field "prediction"`);
    if (typeof o.prediction !== 'string') {
      throw new EvalError('E_EVAL_INPUT', `${src}:${lineNo}: "prediction" must be a string, got ${o.prediction === null ? 'null' : typeof o.prediction}`);
    }
    const hasOne = 'reference' in o;
    const hasMany = 'references' in o;
    if (hasOne && hasMany) throw new EvalError('E_EVAL_INPUT', `${src}:${lineNo}: give either "reference" or "references", not both`);
    if (!hasOne && !hasMany) throw new EvalError('E_EVAL_INPUT', `${src}:${lineNo}: missing field "reference" (or "references", a list)`);
    let references: string[];
    if (hasOne) {
      if (typeof o.reference !== 'string') {
        throw new EvalError('E_EVAL_INPUT', `${src}:${lineNo}: "reference" must be a string${Array.isArray(o.reference) ? ' (use "references" for a list)' : ''}`);
      }
      references = [o.reference];
    } else {
      const refs = o.references;
      if (!Array.isArray(refs) || refs.length === 0 || refs.some((r) => typeof r !== 'string')) {
        throw new EvalError('E_EVAL_INPUT', `${src}:${lineNo}: "references" must be a non-empty list of strings`);
      }
      references = refs as string[];
    }
    examples.push({ prediction: o.prediction, references, line: lineNo });
    if (end === data.length) break;
  }
  return { examples, warnings };
}
