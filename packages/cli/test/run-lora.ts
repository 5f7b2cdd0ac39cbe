// The built CLI (dist/main.js) as a child process, for the CLI tests that must keep this process's
// event loop free meanwhile (a server in this process answers the child): async spawn, output gathered.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');

/** Runs `lora ARGS` with extra environment `env`; resolves with its exit status and output once it closes. */
export function lora(args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cli, ...args], { env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}
