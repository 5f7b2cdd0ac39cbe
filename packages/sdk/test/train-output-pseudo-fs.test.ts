// `lora train --out /proc/x` hung forever (Node's recursive mkdir spins under /proc); the output
// folder check now refuses kernel pseudo file systems up front with a coded error.
import { describe, expect, it } from 'vitest';

import { prepareOutputDir } from '../src/train/output-dir.js';

describe('prepareOutputDir on kernel pseudo file systems', () => {
  for (const dir of ['/proc/x', '/proc/self/x/y', '/sys/lora-run']) {
    it(`refuses ${dir} with E_OUTPUT_DIR`, async () => {
      await expect(prepareOutputDir(dir)).rejects.toMatchObject({ code: 'E_OUTPUT_DIR', message: expect.stringContaining('pseudo file system') });
    }, 10_000);
  }
});
