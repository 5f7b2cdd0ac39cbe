// A small stand-in for the part of vitest's API that the op-matrix test files use (describe, it,
// skipIf, expect with the usual matchers), so the kit can run those files unchanged where vitest is
// not installed (the GPU machine has no Node and no registry). Tests register while the file is
// imported; run-tests.mjs then runs them one by one and reports each. A matcher this shim lacks
// fails the test with that name, never passes silently.
import { isDeepStrictEqual, inspect } from 'node:util';

const tests = [];
const stack = [];
let skipDepth = 0;

const fullName = (name) => [...stack, name].join(' > ');

export function describe(name, fn) {
  stack.push(name);
  try {
    fn();
  } finally {
    stack.pop();
  }
}
describe.skipIf = (cond) => (name, fn) => {
  if (cond) skipDepth++;
  try {
    describe(name, fn);
  } finally {
    if (cond) skipDepth--;
  }
};

export function it(name, fn) {
  tests.push({ name: fullName(name), fn, skip: skipDepth > 0 });
}
it.skipIf = (cond) => (name, fn) => tests.push({ name: fullName(name), fn, skip: cond || skipDepth > 0 });
it.each = (rows) => (name, fn) => {
  for (const row of rows) it(name.replace('%s', String(row)), () => fn(row));
};
export const test = it;

/** The tests registered so far (run-tests.mjs takes them after importing a file). */
export function registered() {
  return tests.splice(0);
}

class AssertionError extends Error {}
const show = (v) => inspect(v, { depth: 4, maxArrayLength: 20, breakLength: 120 });

function matchers(actual, message, negate) {
  const assert = (pass, what) => {
    if (pass === negate) throw new AssertionError(`${message ? `${message}: ` : ''}expected ${show(actual)} ${negate ? 'not ' : ''}${what}`);
  };
  const m = {
    toBe: (e) => assert(Object.is(actual, e), `to be ${show(e)}`),
    toEqual: (e) => assert(isDeepStrictEqual(actual, e), `to equal ${show(e)}`),
    toStrictEqual: (e) => assert(isDeepStrictEqual(actual, e), `to strictly equal ${show(e)}`),
    toBeGreaterThan: (e) => assert(actual > e, `to be > ${e}`),
    toBeGreaterThanOrEqual: (e) => assert(actual >= e, `to be >= ${e}`),
    toBeLessThan: (e) => assert(actual < e, `to be < ${e}`),
    toBeLessThanOrEqual: (e) => assert(actual <= e, `to be <= ${e}`),
    toBeTruthy: () => assert(!!actual, 'to be truthy'),
    toBeFalsy: () => assert(!actual, 'to be falsy'),
    toBeDefined: () => assert(actual !== undefined, 'to be defined'),
    toBeUndefined: () => assert(actual === undefined, 'to be undefined'),
    toBeNull: () => assert(actual === null, 'to be null'),
    toBeNaN: () => assert(Number.isNaN(actual), 'to be NaN'),
    toContain: (e) => assert(actual?.includes?.(e) === true, `to contain ${show(e)}`),
    toHaveLength: (n) => assert(actual?.length === n, `to have length ${n}`),
    toMatch: (re) => assert(typeof re === 'string' ? String(actual).includes(re) : re.test(String(actual)), `to match ${re}`),
    toThrow: (re) => {
      let thrown;
      try {
        actual();
      } catch (e) {
        thrown = e;
      }
      const ok = thrown !== undefined && (re === undefined || (typeof re === 'string' ? String(thrown?.message).includes(re) : re.test(String(thrown?.message))));
      assert(ok, `to throw${re ? ` ${re}` : ''} (threw ${thrown === undefined ? 'nothing' : show(thrown?.message)})`);
    },
  };
  return new Proxy(m, {
    get(target, prop) {
      if (prop === 'not') return matchers(actual, message, !negate);
      if (prop in target) return target[prop];
      if (typeof prop === 'symbol' || prop === 'then') return undefined;
      throw new AssertionError(`the kit's vitest shim has no matcher .${String(prop)}() (add it to scripts/gpu-kit/vitest-shim.mjs)`);
    },
  });
}

export const expect = (actual, message) => matchers(actual, message, false);
