#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#define VW 8
#define ISA(name) name##_avx2
#include "kernels_impl.h"
#include "winograd_impl.h"
#include "attention_impl.h"
#include "few_columns_impl.h"
#include "linear_product_impl.h"
#pragma clang attribute pop
