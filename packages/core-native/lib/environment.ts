// One object describing this machine as the kernels see it; `lora env` prints it.
import { loadAddon, type AddonVariant } from './loader.js';
import type { BackendStatus, BuildInfo, CpuInfo, CudaInfo } from './native.js';

export interface EnvironmentReport {
  node: string;
  platform: string;
  addon: { path: string; variant: AddonVariant; build: BuildInfo; skipped: { path: string; reason: string }[] };
  cpu: CpuInfo;
  backends: BackendStatus[];
  cuda: CudaInfo;
}

export function environment(): EnvironmentReport {
  const { addon, path, variant, skipped } = loadAddon();
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    addon: { path, variant, build: addon.buildInfo(), skipped },
    cpu: addon.cpuInfo(),
    backends: addon.backends(),
    cuda: addon.cudaInfo(),
  };
}

function cudaVersion(v: number): string {
  return v ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : 'none';
}

/** A plain-text block suitable for pasting into a bug report. */
export function formatEnvironment(r: EnvironmentReport): string {
  const f = r.cpu.features;
  const flag = (b: boolean) => (b ? 'yes' : 'no');
  const lines = [
    'lora environment',
    `  node          ${r.node} (${r.platform})`,
    `  addon         ${r.addon.path} [${r.addon.variant}]`,
    `  build         ${r.addon.build.buildType}, gcc ${r.addon.build.compiler}, N-API ${r.addon.build.napiVersion}` +
      `${r.addon.build.sanitize ? ', ASan+UBSan' : ''}` +
      `, CUDA ${r.addon.build.cuda ? `built for sm_${r.addon.build.cudaArchs.replaceAll(',', ',sm_')}` : 'not built'}` +
      `, emulator ${r.addon.build.emu ? 'built' : 'not built'}`,
    `  cpu           ${r.cpu.model || 'unknown'} (${r.cpu.vendor}), ${r.cpu.logicalCores} logical cores`,
    `  isa           AVX-512F ${flag(f.avx512f)}, BW ${flag(f.avx512bw)}, VL ${flag(f.avx512vl)}, DQ ${flag(f.avx512dq)}, ` +
      `BF16 ${flag(f.avx512bf16)}, VNNI ${flag(f.avx512vnni)}, FMA ${flag(f.fma)}, OS zmm state ${flag(f.osAvx512)}`,
    '  backends',
    ...r.backends.map(
      (b) => `    ${b.name.padEnd(5)} ${b.usable ? 'usable' : b.built ? 'built, not usable' : 'not built'}${b.reason ? ` — ${b.reason}` : ''}`,
    ),
    `  cuda          runtime ${cudaVersion(r.cuda.runtimeVersion)}, driver ${cudaVersion(r.cuda.driverVersion)}` +
      (r.cuda.usable
        ? `, ${r.cuda.deviceCount} device(s): ${r.cuda.deviceName} (sm_${r.cuda.computeCapability.replace('.', '')}, ${(r.cuda.totalMemory / 2 ** 30).toFixed(1)} GiB)`
        : `, CUDA unavailable: ${r.cuda.reason}`),
  ];
  return lines.join('\n');
}
