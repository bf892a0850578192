# Protocol frames: in the daemon (engine library) and in libobjmapper.
ENGINE_SRCS += src/proto/proto.c
ENGINE_SRCS += src/proto/http.c src/proto/status.c
