// Every op kernel family, for the backends (emu: g++ + emulator; cuda: nvcc).
#pragma once
#include "attention.cuh"
#include "cross_entropy.cuh"
#include "elementwise.cuh"
#include "gemm.cuh"
#include "llama.cuh"
#include "lora.cuh"
#include "norm.cuh"
