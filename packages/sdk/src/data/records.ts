// CodeAlpaca-style instruction records (`instruction`, `input`, `output`) from JSON, JSONL or
// Parquet. Every record is validated: a data file is user input, and a bad row should be named,
// not silently dropped.
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';

import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';

import { LoraError } from '../io/errors.js';

export interface InstructionRecord {
  instruction: string;
  input: string;
  output: string;
}

export type RecordFormat = 'json' | 'jsonl' | 'parquet';

function formatOf(path: string, format?: RecordFormat): RecordFormat {
  if (format) return format;
  const ext = extname(path).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.parquet') return 'parquet';
  if (ext === '.json') return 'json';
  throw new LoraError('E_DATA', `${path}: cannot tell the format from the extension '${ext}' (use .json, .jsonl or .parquet, or pass format)`);
}

/** Checks one row and returns it as a record; `where` names the row in errors. */
export function toRecord(row: unknown, where: string): InstructionRecord {
  if (typeof row !== 'object' || row === null || Array.isArray(row)) {
    throw new LoraError('E_DATA', `${where}: expected an object with instruction, input and output`);
  }
  const r = row as Record<string, unknown>;
  const field = (name: string, required: boolean): string => {
    const v = r[name];
    if (v === undefined || v === null) {
      if (required) throw new LoraError('E_DATA', `${where}: missing '${name}'`);
      return '';
    }
    if (typeof v !== 'string') throw new LoraError('E_DATA', `${where}: '${name}' must be a string, got ${typeof v}`);
    return v;
  };
  return { instruction: field('instruction', true), input: field('input', false), output: field('output', true) };
}

type RowReader<T> = (row: unknown, where: string) => T;

/** Parses records from text in JSON (an array) or JSONL (one object per line). */
export function parseRecords(text: string, format: 'json' | 'jsonl', source = 'data'): InstructionRecord[] {
  return parseRows(text, format, source, toRecord);
}

/** Like parseRecords, with `toRow` checking and converting each row (training takes chat records too). */
export function parseRows<T>(text: string, format: 'json' | 'jsonl', source: string, toRow: RowReader<T>): T[] {
  if (format === 'json') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new LoraError('E_DATA', `${source}: not valid JSON: ${(e as Error).message}`);
    }
    if (!Array.isArray(parsed)) throw new LoraError('E_DATA', `${source}: expected a JSON array of records`);
    return parsed.map((row, i) => toRow(row, `${source} record ${i}`));
  }
  const out: T[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw new LoraError('E_DATA', `${source} line ${i + 1}: not valid JSON: ${(e as Error).message}`);
    }
    out.push(toRow(row, `${source} line ${i + 1}`));
  }
  return out;
}

/** Reads every record of a local file. */
export async function readRecords(path: string, options: { format?: RecordFormat } = {}): Promise<InstructionRecord[]> {
  return readRows(path, toRecord, options);
}

/** Like readRecords, with `toRow` checking and converting each row. */
export async function readRows<T>(path: string, toRow: RowReader<T>, options: { format?: RecordFormat } = {}): Promise<T[]> {
  const format = formatOf(path, options.format);
  if (format === 'parquet') {
    let rows: Record<string, unknown>[];
    try {
      const file = await asyncBufferFromFile(path);
      rows = (await parquetReadObjects({ file })) as Record<string, unknown>[];
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code === 'ENOENT') throw new LoraError('E_FILE_NOT_FOUND', `${path}: no such file`);
      throw new LoraError('E_DATA', `${path}: not a readable Parquet file: ${err.message}`);
    }
    return rows.map((row, i) => toRow(row, `${path} row ${i}`));
  }
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new LoraError('E_FILE_NOT_FOUND', `${path}: no such file`);
    throw e;
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new LoraError('E_DATA', `${path}: not valid UTF-8`);
  }
  return parseRows(text, format, path, toRow);
}
