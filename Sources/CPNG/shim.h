#include <png.h>
// zlib (a dependency of libpng-dev): crc32 for the text chunks PNGWriter splices in.
#include <zlib.h>
