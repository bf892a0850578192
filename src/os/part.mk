ENGINE_SRCS += src/os/os.c
