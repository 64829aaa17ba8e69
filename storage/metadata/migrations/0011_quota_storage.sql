-- Storage and partition quotas per organisation (issue 15, engine/auth/quota_storage.py): the
-- bytes of committed segments and the partitions its topics may hold. NULL is the server's
-- default (serve --quota-storage-bytes / --quota-partitions, unlimited unless given).
ALTER TABLE auth_quotas ADD COLUMN storage_bytes BIGINT CHECK (storage_bytes > 0);
ALTER TABLE auth_quotas ADD COLUMN partitions BIGINT CHECK (partitions > 0);
