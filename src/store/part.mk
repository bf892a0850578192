ENGINE_SRCS += src/store/store.c src/store/store_meta.c src/store/store_cache.c src/store/store_rebuild.c src/store/store_space.c src/store/store_record.c src/store/store_scrub.c
