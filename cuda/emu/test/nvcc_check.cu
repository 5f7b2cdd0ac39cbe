// Compile-only check: the emulator's test kernels must also build with nvcc for the real
// GPUs (sm_80 A100, sm_89 L4, sm_90 H100). run.sh compiles this with -Xptxas -v and keeps the
// register / shared-memory report in cuda/emu/build/ptxas-report.txt.
#include "kernels.cuh"

// Take every launcher's address so each kernel (and template instance) is emitted.
void* lora_emu_nvcc_check_launchers[] = {
    reinterpret_cast<void*>(&emu_test::launch_vec_add),
    reinterpret_cast<void*>(&emu_test::launch_vec_add_oob),
    reinterpret_cast<void*>(&emu_test::launch_block_sum),
    reinterpret_cast<void*>(&emu_test::launch_warp_ops),
    reinterpret_cast<void*>(&emu_test::launch_geometry),
    reinterpret_cast<void*>(&emu_test::launch_atomics),
    reinterpret_cast<void*>(&emu_test::launch_read_unwritten_smem),
    reinterpret_cast<void*>(&emu_test::launch_shift_right),
    reinterpret_cast<void*>(&emu_test::launch_divergent_barrier),
    reinterpret_cast<void*>(&emu_test::launch_exit_before_barrier),
    reinterpret_cast<void*>(&emu_test::launch_bad_mask),
    reinterpret_cast<void*>(&emu_test::launch_mask_names_missing_lanes),
    reinterpret_cast<void*>(&emu_test::launch_deadlock),
    reinterpret_cast<void*>(&emu_test::launch_trapper),
    reinterpret_cast<void*>(&emu_test::launch_barrier_loop),
    reinterpret_cast<void*>(&emu_test::launch_shuffle_loop),
    reinterpret_cast<void*>(&emu_test::launch_mma_fragments),
    reinterpret_cast<void*>(&emu_test::launch_ldmatrix_dump),
    reinterpret_cast<void*>(&emu_test::launch_gemm_bf16),
    reinterpret_cast<void*>(&emu_test::launch_cp_async_copy),
};
