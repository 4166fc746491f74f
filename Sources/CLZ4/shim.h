#ifndef GAVEL_CLZ4_SHIM_H
#define GAVEL_CLZ4_SHIM_H
#include <lz4frame.h>
#endif
