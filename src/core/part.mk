ENGINE_SRCS += src/core/core.c src/core/log.c src/core/crc32c.c src/core/hash.c
