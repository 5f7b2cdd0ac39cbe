/**
 * The few pieces of Python's `str` semantics that the reference metrics rely on. JavaScript's `\s`
 * and `trim()` are close to Python's `str.split()` / `str.strip()` but not the same set (Python counts
 * U+001C..U+001F as whitespace and not U+FEFF), and metric values change when a token boundary does.
 */

/** The characters for which Python's `str.isspace()` is true. */
const PY_WS_CLASS = '\\t\\n\\x0b\\x0c\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_WS_RUN = new RegExp(`[${PY_WS_CLASS}]+`, 'u');
const PY_WS_LEAD = new RegExp(`^[${PY_WS_CLASS}]+`, 'u');
const PY_WS_TAIL = new RegExp(`[${PY_WS_CLASS}]+$`, 'u');

/** Python's `s.split()` (no argument): split on runs of whitespace, dropping empty pieces. */
export function pySplit(s: string): string[] {
  return s.split(PY_WS_RUN).filter((t) => t.length > 0);
}

/** Python's `s.rstrip()`. */
export function pyRstrip(s: string): string {
  return s.replace(PY_WS_TAIL, '');
}

/** Python's `s.strip()`. */
export function pyStrip(s: string): string {
  return s.replace(PY_WS_LEAD, '').replace(PY_WS_TAIL, '');
}

/** Python's `s.lower()`. JavaScript's `toLowerCase` applies the same Unicode default case mapping. */
export function pyLower(s: string): string {
  return s.toLowerCase();
}
