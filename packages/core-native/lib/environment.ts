// One object describing this machine as the kernels see it; `lora env` prints it.
import { distInfo, type DistInfo } from './dist.js';
import { loadAddon, type AddonVariant } from './loader.js';
import type { BackendStatus, BuildInfo, CpuInfo, CudaInfo } from './native.js';

export interface EnvironmentReport {
  node: string;
  platform: string;
  addon: { path: string; variant: AddonVariant; build: BuildInfo; skipped: { path: string; reason: string }[] };
  cpu: CpuInfo;
  backends: BackendStatus[];
  cuda: CudaInfo;
  /** Open MPI / NCCL for data-parallel training: whether usable here and why not. */
  dist: DistInfo;
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
    dist: distInfo(),
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
    `  mpi           ${r.dist.usable ? `usable (plug-in ${r.dist.pluginPath})` : r.dist.reason}` +
      (r.dist.envSize > 0 ? `; launched as rank ${r.dist.envRank} of ${r.dist.envSize}` : '; not launched by mpirun (single process)'),
    `  nccl          ${r.dist.ncclBuilt ? 'built into the MPI plug-in (GPU ranks)' : r.dist.ncclReason}`,
  ];
  return lines.join('\n');
}
