ENGINE_SRCS += src/os/os.c src/os/fdpass.c src/os/signals.c
