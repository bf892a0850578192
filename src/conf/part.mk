# Configuration file parser (inih), used by objmapperd.
ENGINE_SRCS += src/conf/conf.c
