ENGINE_SRCS += src/index/index.c
