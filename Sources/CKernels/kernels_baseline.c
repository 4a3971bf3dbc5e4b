#define VW 4
#define ISA(name) name##_baseline
#include "kernels_impl.h"
#include "winograd_impl.h"
#include "attention_impl.h"
#include "few_columns_impl.h"
#include "linear_product_impl.h"
