/**
 * Reading the records `lora eval` evaluates: the same files `lora train` reads (JSON, JSONL,
 * Parquet), with the held-out part chosen exactly as training chose its train part
 * (splitTrainTest with the same fraction and seed). Bytes that are not UTF-8 in a JSON/JSONL file are
 * an error naming the line, or with `invalidUtf8: 'replace'` become U+FFFD with a warning per line.
 */
import { extname } from 'node:path';

import { isLoraError, LoraError } from '../io/errors.js';
import { readSmallFile } from '../io/safe-file.js';
import { parseRecords, readRecords, type InstructionRecord } from '../data/records.js';
import { splitTrainTest } from '../data/split.js';
import { EvalError } from './errors.js';

export interface ReadEvalRecordsOptions {
  invalidUtf8?: 'error' | 'replace';
}

/** Held-out records for generation; CodeAlpaca-20k is 8 MB. */
const MAX_EVAL_FILE_BYTES = 256 * 1024 * 1024;

const strict = new TextDecoder('utf-8', { fatal: true });
const lossy = new TextDecoder('utf-8', { fatal: false });

/** Reads every record of a data file; `warnings` lists the lines whose bytes were replaced. */
export async function readEvalRecords(path: string, o: ReadEvalRecordsOptions = {}): Promise<{ records: InstructionRecord[]; warnings: string[] }> {
  const ext = extname(path).toLowerCase();
  if (ext === '.parquet') return { records: await readRecords(path), warnings: [] };
  if (ext !== '.json' && ext !== '.jsonl' && ext !== '.ndjson') {
    throw new EvalError('E_EVAL_INPUT', `${path}: cannot tell the format from the extension '${ext}' (use .json, .jsonl or .parquet)`);
  }
  // A FIFO or device is refused, not waited on; past 256 MiB the text could not be one JS string anyway.
  const bytes = Buffer.from(await readSmallFile(path, MAX_EVAL_FILE_BYTES).catch((e: unknown) => {
    throw isLoraError(e, 'E_FILE_NOT_FOUND') ? new LoraError('E_FILE_NOT_FOUND', `${path}: no such file`) : e;
  }));
  const warnings: string[] = [];
  let text: string;
  try {
    text = strict.decode(bytes);
  } catch {
    const bad: number[] = [];
    let line = 1;
    let start = 0;
    while (start <= bytes.length) {
      let end = bytes.indexOf(10, start);
      if (end < 0) end = bytes.length;
      try {
        strict.decode(bytes.subarray(start, end));
      } catch {
        bad.push(line);
      }
      line++;
      start = end + 1;
    }
    const lines = bad.length > 5 ? `${bad.slice(0, 5).join(', ')} and ${bad.length - 5} more` : bad.join(', ');
    const where = `${path}: bytes that are not valid UTF-8 on line${bad.length === 1 ? '' : 's'} ${lines}`;
    if (o.invalidUtf8 !== 'replace') {
      throw new EvalError('E_EVAL_INPUT', `${where} (re-encode the file as UTF-8, or pass --replace-invalid-utf8 to substitute U+FFFD)`);
    }
    warnings.push(`${where}; replaced with U+FFFD`);
    text = lossy.decode(bytes);
  }
  return { records: parseRecords(text, ext === '.json' ? 'json' : 'jsonl', path), warnings };
}

/** The held-out records: what splitTrainTest(records, trainFraction, seed) leaves out of `train`, first `limit` of them. */
export function heldOutRecords(records: readonly InstructionRecord[], trainFraction: number, seed: number, limit?: number): InstructionRecord[] {
  if (trainFraction === 0) return limit === undefined ? [...records] : records.slice(0, limit);
  const { test } = splitTrainTest(records, trainFraction, seed);
  return limit === undefined ? test : test.slice(0, limit);
}
