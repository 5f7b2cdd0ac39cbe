// Declared flags for every command: one table per command gives each flag's kind, default, help
// text and aliases, and drives both parsing and `--help`, so what help prints is what is accepted.
// Parsing is strict: an unknown flag or enum value is refused with a did-you-mean, a number is
// range-checked, and a value may start with '-' (`--lr -1` is read as the value -1 and refused by
// its range, not by Node's "argument is ambiguous").
import { UsageError } from './command.js';

export type FlagKind = 'string' | 'boolean' | 'int' | 'number' | 'enum' | 'list';

export interface FlagSpec {
  /** The canonical long name without dashes, e.g. 'grad-accum'. */
  name: string;
  kind: FlagKind;
  help: string;
  /** The value used when the flag is absent (also printed by --help unless defaultText is given). */
  default?: string | number | boolean | readonly string[];
  /** What --help prints as the default when it is not a plain value (e.g. '4 × r'). */
  defaultText?: string;
  /** Placeholder in --help (default: N, X, NAME, ... by kind). */
  metavar?: string;
  /** Other spellings (without dashes), e.g. Hugging Face's 'learning_rate'. */
  aliases?: readonly string[];
  /** Aliases that also set the value, e.g. `--bf16` = `--dtype bf16`. */
  valueAliases?: Readonly<Record<string, string>>;
  /** Allowed values of an enum, or of each item of a list. */
  choices?: readonly string[];
  /** Accepted spellings of a choice, mapped to the choice (e.g. fp16 -> f16). Not listed in help. */
  choiceAliases?: Readonly<Record<string, string>>;
  min?: number;
  max?: number;
  /** The value must be strictly greater than min. */
  minExclusive?: boolean;
  /** What one item of a list is called in errors ('metric', 'target'). */
  itemName?: string;
  /** Hidden from --help (kept for compatibility). */
  hidden?: boolean;
}

export interface CommandSpec {
  /** e.g. 'lora train'. */
  command: string;
  /** First line(s) of --help: the synopsis. */
  synopsis: string;
  /** A paragraph under the synopsis. */
  description?: string;
  flags: readonly FlagSpec[];
  /** Positional arguments: name for help, and how many are allowed. */
  positionals?: { name: string; min: number; max: number };
  /** Flags that cannot be given together. */
  exclusive?: ReadonlyArray<readonly [string, string]>;
  /** Lines after the flag table (examples, notes). */
  notes?: readonly string[];
}

export type FlagValue = string | number | boolean | string[] | undefined;
export interface Parsed {
  values: Record<string, FlagValue>;
  /** Flags the user gave (canonical names), as opposed to defaults. */
  given: Set<string>;
  positionals: string[];
}

/** Edit distance counting a swap of two neighbours as one edit (optimal string alignment), for did-you-mean. */
export function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The closest candidate within a distance that scales with the word (≤ 1/3 of it, at least 1). */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 3 ? 0.5 : editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

const suggest = (word: string, candidates: Iterable<string>, prefix = '') => {
  const c = closest(word, candidates);
  return c === undefined ? '' : `; did you mean '${prefix}${c}'?`;
};

function index(spec: CommandSpec): Map<string, { flag: FlagSpec; value?: string }> {
  const m = new Map<string, { flag: FlagSpec; value?: string }>();
  for (const f of spec.flags) {
    m.set(f.name, { flag: f });
    for (const a of f.aliases ?? []) m.set(a, { flag: f });
    for (const [a, v] of Object.entries(f.valueAliases ?? {})) m.set(a, { flag: f, value: v });
  }
  return m;
}

function numberValue(f: FlagSpec, raw: string): number {
  const v = Number(raw);
  const integer = f.kind === 'int';
  if (raw.trim() === '' || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new UsageError(`--${f.name} must be ${integer ? 'an integer' : 'a number'}, got '${raw}'`);
  }
  if (f.min !== undefined && (f.minExclusive ? v <= f.min : v < f.min)) throw new UsageError(`--${f.name} must be ${f.minExclusive ? '>' : '>='} ${f.min}, got ${raw}`);
  if (f.max !== undefined && v > f.max) throw new UsageError(`--${f.name} must be <= ${f.max}, got ${raw}`);
  return v;
}

function choiceValue(f: FlagSpec, raw: string, what: string): string {
  const v = raw.trim();
  const choices = f.choices ?? [];
  if (choices.includes(v)) return v;
  const alias = f.choiceAliases?.[v.toLowerCase()] ?? (choices.includes(v.toLowerCase()) ? v.toLowerCase() : undefined);
  if (alias !== undefined) return alias;
  // Suggest the canonical value even when the nearest spelling is an alias (fp17 -> f16, not fp16).
  const near = closest(v, [...choices, ...Object.keys(f.choiceAliases ?? {})].filter((c) => c.length > 1));
  const canonical = near === undefined ? undefined : (f.choiceAliases?.[near] ?? near);
  const mean = canonical ? `; did you mean '${canonical}'?` : '';
  if (f.kind === 'list') throw new UsageError(`unknown ${f.itemName ?? 'value'} '${raw}' in --${f.name} (expected ${choices.join(', ')})${mean}`);
  throw new UsageError(`${what} '${raw}' is not one of ${choices.join(', ')}${mean}`);
}

function convert(f: FlagSpec, raw: string): FlagValue {
  switch (f.kind) {
    case 'int':
    case 'number':
      return numberValue(f, raw);
    case 'enum':
      return choiceValue(f, raw, `--${f.name}`);
    case 'list': {
      const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
      if (!items.length) throw new UsageError(`--${f.name} needs at least one value`);
      return f.choices ? items.map((s) => choiceValue(f, s, `--${f.name} value`)) : items;
    }
    default:
      return raw;
  }
}

/** Parses argv against a command's declared flags; every user mistake is a UsageError. */
export function parseFlags(spec: CommandSpec, argv: readonly string[]): Parsed {
  const byName = index(spec);
  const values: Record<string, FlagValue> = {};
  const given = new Set<string>();
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-' || /^-\d/.test(arg)) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const word = (eq >= 0 ? arg.slice(0, eq) : arg).replace(/^--?/, '');
    let inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    // Any flag may also be spelled with underscores (--max_new_tokens), as Hugging Face's are.
    const hit = byName.get(word) ?? byName.get(word.replace(/_/g, '-'));
    if (!hit || !arg.startsWith('--')) {
      const names = [...byName.keys()];
      throw new UsageError(`unknown flag '${arg.slice(0, eq >= 0 ? eq : undefined)}'${suggest(word, names, '--')}`);
    }
    const f = hit.flag;
    if (given.has(f.name)) throw new UsageError(`--${f.name} given twice`);
    given.add(f.name);
    if (hit.value !== undefined) {
      if (inline !== undefined && !/^(true|1)$/i.test(inline)) throw new UsageError(`--${word} takes no value (it means --${f.name} ${hit.value})`);
      values[f.name] = convert(f, hit.value);
      continue;
    }
    if (f.kind === 'boolean') {
      if (inline === undefined) values[f.name] = true;
      else if (/^(true|1|yes)$/i.test(inline)) values[f.name] = true;
      else if (/^(false|0|no)$/i.test(inline)) values[f.name] = false;
      else throw new UsageError(`--${f.name} is a switch and takes no value, got '${inline}'`);
      continue;
    }
    if (inline === undefined) {
      const next = argv[i + 1];
      // A number may be negative ('-1'); any other value that looks like a flag is a missing value.
      const numeric = f.kind === 'int' || f.kind === 'number';
      if (next === undefined || (next.startsWith('--') && !(numeric && /^--?\d/.test(next))) || (!numeric && /^-[a-zA-Z]/.test(next))) {
        const hint = next !== undefined && !numeric ? ` (a value that starts with '-' is written --${f.name}=${next})` : '';
        throw new UsageError(`--${f.name} needs a value${f.choices ? ` (one of ${f.choices.join(', ')})` : ''}${hint}`);
      }
      inline = next;
      i++;
    }
    values[f.name] = convert(f, inline);
  }
  for (const f of spec.flags) if (values[f.name] === undefined && f.default !== undefined) values[f.name] = (Array.isArray(f.default) ? [...f.default] : f.default) as FlagValue;
  for (const [a, b] of spec.exclusive ?? []) {
    if (given.has(a) && given.has(b)) throw new UsageError(`--${a} and --${b} cannot be given together (pick one)`);
  }
  const p = spec.positionals ?? { name: '', min: 0, max: 0 };
  if (positionals.length > p.max) {
    const extra = positionals[p.max];
    throw new UsageError(p.max === 0 ? `unexpected argument '${extra}'` : `too many arguments ('${extra}')`);
  }
  if (positionals.length < p.min) throw new UsageError(`give ${p.name}`);
  return { values, given, positionals };
}

function metavar(f: FlagSpec): string {
  if (f.metavar) return f.metavar;
  if (f.kind === 'boolean') return '';
  if (f.kind === 'int') return 'N';
  if (f.kind === 'number') return 'X';
  if (f.kind === 'enum') return (f.choices ?? []).join('|');
  if (f.kind === 'list') return f.choices ? 'A,B,...' : 'LIST';
  return 'VALUE';
}

/** 2e-4 rather than 0.0002: learning rates read the way people write them. */
export function formatNumber(v: number): string {
  return v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential().replace(/e([+-])(\d+)$/, (_m, sign: string, e: string) => `e${sign === '-' ? '-' : ''}${e}`) : String(v);
}

function defaultOf(f: FlagSpec): string | undefined {
  if (f.defaultText !== undefined) return f.defaultText;
  if (f.default === undefined || f.default === false) return undefined;
  if (typeof f.default === 'number') return formatNumber(f.default);
  return Array.isArray(f.default) ? f.default.join(',') : String(f.default);
}

/** Words of `text` in lines of at most `max` characters (a longer word gets a line of its own). */
function wrap(text: string, max: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > max) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out;
}

/**
 * `--help` for a command: synopsis, description, one entry per flag with its default and aliases,
 * wrapped to `columns` (the terminal's width, 100 when not a terminal).
 */
export function formatHelp(spec: CommandSpec, columns = Math.min(process.stdout.columns || 100, 120)): string {
  const shown = spec.flags.filter((f) => !f.hidden);
  const left = shown.map((f) => `  --${f.name}${metavar(f) ? ` ${metavar(f)}` : ''}`);
  const width = Math.min(34, Math.max(...left.map((l) => l.length), 0));
  const lines = [`Usage: ${spec.synopsis}`];
  if (spec.description) lines.push('', spec.description);
  if (shown.length) lines.push('', 'Options:');
  shown.forEach((f, i) => {
    const extra: string[] = [];
    const d = defaultOf(f);
    if (d !== undefined) extra.push(`default: ${d}`);
    if (f.kind === 'list' && f.choices) extra.push(`from ${f.choices.join(', ')}`);
    const also = [...(f.aliases ?? []), ...Object.keys(f.valueAliases ?? {})];
    if (also.length) extra.push(`also ${also.map((a) => `--${a}`).join(', ')}`);
    const text = wrap(`${f.help}${extra.length ? ` (${extra.join('; ')})` : ''}`, Math.max(40, columns - width - 2)).join(`\n${' '.repeat(width + 2)}`);
    lines.push(left[i].length > width ? `${left[i]}\n${' '.repeat(width + 2)}${text}` : `${left[i].padEnd(width)}  ${text}`);
  });
  lines.push(`  ${'--help'.padEnd(width - 2)}  this help`);
  if (spec.exclusive?.length) lines.push('', ...spec.exclusive.map(([a, b]) => `--${a} and --${b} are exclusive.`));
  if (spec.notes?.length) lines.push('', ...spec.notes);
  return lines.join('\n');
}

/** Typed access to parsed values (the spec guarantees the kinds). */
export const str = (p: Parsed, k: string) => p.values[k] as string | undefined;
export const num = (p: Parsed, k: string) => p.values[k] as number | undefined;
export const bool = (p: Parsed, k: string) => p.values[k] === true;
export const list = (p: Parsed, k: string) => p.values[k] as string[] | undefined;
