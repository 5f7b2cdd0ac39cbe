// The embedded default data set: code-instruction records in CodeAlpaca's schema, generated from a
// seed so `lora bench` runs offline on a fresh machine. Outputs are computed, not canned, so the
// tasks have learnable structure (sorted arrays really are sorted, sums are right), and a model that
// trains on them should lower its loss the way it does on CodeAlpaca.
import type { InstructionRecord } from './records.js';
import { seededRandom } from './split.js';

type Rand = () => number;
const pick = <T>(rand: Rand, xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)];
const int = (rand: Rand, lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
const ints = (rand: Rand, n: number, lo: number, hi: number) => Array.from({ length: n }, () => int(rand, lo, hi));

const NAMES = ['data', 'items', 'values', 'nums', 'arr', 'scores', 'prices', 'counts'];
const TABLES = ['users', 'orders', 'products', 'employees', 'customers', 'books'];
const COLUMNS = ['age', 'price', 'salary', 'quantity', 'rating', 'year'];
const WORDS = ['apple', 'banana', 'cherry', 'delta', 'echo', 'forest', 'garden', 'harbor', 'island', 'jungle'];

type Task = (rand: Rand) => InstructionRecord;

const TASKS: Task[] = [
  (r) => {
    const xs = ints(r, int(r, 4, 8), -20, 99);
    return { instruction: 'Sort the following array in ascending order.', input: `[${xs.join(', ')}]`, output: `[${[...xs].sort((a, b) => a - b).join(', ')}]` };
  },
  (r) => {
    const xs = ints(r, int(r, 3, 7), 0, 500);
    return { instruction: 'Find the maximum value in the given list.', input: `[${xs.join(', ')}]`, output: String(Math.max(...xs)) };
  },
  (r) => {
    const xs = ints(r, int(r, 3, 6), 1, 50);
    return { instruction: 'Calculate the sum of the numbers in the list.', input: `[${xs.join(', ')}]`, output: String(xs.reduce((a, b) => a + b, 0)) };
  },
  (r) => {
    const n = int(r, 0, 10);
    let f = 1;
    for (let i = 2; i <= n; i++) f *= i;
    return { instruction: `Compute the factorial of ${n}.`, input: '', output: String(f) };
  },
  (r) => {
    const name = pick(r, NAMES);
    return {
      instruction: `Write a Python function that returns the sum of the elements in the list ${name}.`,
      input: '',
      output: `def total(${name}):\n    result = 0\n    for x in ${name}:\n        result += x\n    return result`,
    };
  },
  (r) => {
    const w = pick(r, WORDS);
    return { instruction: 'Reverse the given string.', input: w, output: [...w].reverse().join('') };
  },
  (r) => {
    const t = pick(r, TABLES);
    const c = pick(r, COLUMNS);
    const n = int(r, 1, 100);
    return { instruction: `Write a SQL query to select all rows from the table ${t} where ${c} is greater than ${n}.`, input: '', output: `SELECT * FROM ${t} WHERE ${c} > ${n};` };
  },
  (r) => {
    const fn = pick(r, ['isEven', 'checkEven', 'even']);
    return {
      instruction: 'Create a JavaScript function that checks whether a number is even.',
      input: '',
      output: `function ${fn}(n) {\n  return n % 2 === 0;\n}`,
    };
  },
  (r) => {
    const a = int(r, 1, 99);
    const b = int(r, 1, 99);
    return { instruction: 'Write a Python program that prints the product of two numbers.', input: `a = ${a}, b = ${b}`, output: `a = ${a}\nb = ${b}\nprint(a * b)  # ${a * b}` };
  },
  (r) => {
    const ws = Array.from({ length: int(r, 2, 5) }, () => pick(r, WORDS));
    return { instruction: 'Convert the list of words to upper case.', input: JSON.stringify(ws), output: JSON.stringify(ws.map((w) => w.toUpperCase())) };
  },
  (r) => {
    const n = int(r, 2, 12);
    const fib = [0, 1];
    while (fib.length < n) fib.push(fib[fib.length - 1] + fib[fib.length - 2]);
    return { instruction: `Generate the first ${n} Fibonacci numbers.`, input: '', output: fib.slice(0, n).join(', ') };
  },
  (r) => {
    const cls = pick(r, ['Point', 'Vector', 'Pair']);
    return {
      instruction: `Define a Python class ${cls} with attributes x and y and a method that returns their sum.`,
      input: '',
      output: `class ${cls}:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n    def total(self):\n        return self.x + self.y`,
    };
  },
];

/**
 * `count` records from `seed`; the same arguments give the same records everywhere. `tasks: 'warmup'`
 * draws from half of the task kinds only — the embedded model is warmed up on those, so the bench's
 * data (all kinds) holds tasks it has never seen and LoRA has something to learn.
 */
export function syntheticCodeInstructions(count: number, seed = 0, tasks: 'all' | 'warmup' = 'all'): InstructionRecord[] {
  const rand = seededRandom(seed ^ 0x5eed);
  const pool = tasks === 'all' ? TASKS : TASKS.filter((_, i) => i % 2 === 0);
  return Array.from({ length: count }, () => pick(rand, pool)(rand));
}
