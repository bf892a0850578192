ENGINE_SRCS += src/store/store_meta.c src/store/store_tier.c src/store/store_space.c \
               src/store/store_record.c src/store/store_pack.c src/store/store_drop.c src/store/store_evict.c \
               src/store/store_put.c src/store/store_maint.c src/store/store_scrub.c \
               src/store/store_rebuild.c src/store/store_attach.c src/store/store.c
