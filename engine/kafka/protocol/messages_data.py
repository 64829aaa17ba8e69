"""Schemas of the data-path APIs: ApiVersions, Metadata, Produce, Fetch, ListOffsets.

Written by hand from Kafka's protocol documentation. Version ranges are what current
clients negotiate: librdkafka 2.x, the Java client 3.x/4.x (which dropped Produce < 3 and
Fetch < 4), kafka-python and aiokafka (older, non-flexible versions). Fetch stops at 12
and Metadata at 12 so clients address topics by name, not by topic id. ListOffsets stops at
9, the version that allows timestamp -5 (v10 adds a timeout for remote-storage lookups, KIP-1075).
"""

from __future__ import annotations

from streamhouse.kafka.protocol.schema import api

API_VERSIONS = api(
    18, "ApiVersions", "0-4", 3,
    request="""
    client_software_name string v3+
    client_software_version string v3+
    """,
    response="""
    error_code int16
    api_keys []
      api_key int16
      min_version int16
      max_version int16
    throttle_time_ms int32 v1+
    supported_features [] v3+ tag:0
      name string
      min_version int16
      max_version int16
    finalized_features_epoch int64 v3+ tag:1 =-1
    finalized_features [] v3+ tag:2
      name string
      max_version_level int16
      min_version_level int16
    zk_migration_ready bool v3+ tag:3
    """,
)  # fmt: skip

METADATA = api(
    3, "Metadata", "0-12", 9,
    request="""
    topics [] null:1+
      topic_id uuid v10+
      name string null:10+
    allow_auto_topic_creation bool v4+ =true
    include_cluster_authorized_operations bool v8-10
    include_topic_authorized_operations bool v8+
    """,
    response="""
    throttle_time_ms int32 v3+
    brokers []
      node_id int32
      host string
      port int32
      rack string v1+ null:1+ =null
    cluster_id string v2+ null:2+ =null
    controller_id int32 v1+ =-1
    topics []
      error_code int16
      name string null:12+
      topic_id uuid v10+
      is_internal bool v1+
      partitions []
        error_code int16
        partition_index int32
        leader_id int32
        leader_epoch int32 v7+ =-1
        replica_nodes []int32
        isr_nodes []int32
        offline_replicas []int32 v5+
      topic_authorized_operations int32 v8+ =-2147483648
    cluster_authorized_operations int32 v8-10 =-2147483648
    """,
)  # fmt: skip

PRODUCE = api(
    0, "Produce", "3-12", 9,
    request="""
    transactional_id string null:0+ =null
    acks int16
    timeout_ms int32
    topic_data []
      name string
      partition_data []
        index int32
        records records null:0+
    """,
    response="""
    responses []
      name string
      partition_responses []
        index int32
        error_code int16
        base_offset int64
        log_append_time_ms int64 =-1
        log_start_offset int64 v5+ =-1
        record_errors [] v8+
          batch_index int32
          batch_index_error_message string null:8+ =null
        error_message string v8+ null:8+ =null
        current_leader {} v10+ tag:0
          leader_id int32 =-1
          leader_epoch int32 =-1
    throttle_time_ms int32
    node_endpoints [] v10+ tag:0
      node_id int32
      host string
      port int32
      rack string null:0+ =null
    """,
)  # fmt: skip

FETCH = api(
    1, "Fetch", "4-12", 12,
    request="""
    cluster_id string v12+ null:12+ tag:0 =null
    replica_id int32 =-1
    max_wait_ms int32
    min_bytes int32
    max_bytes int32 =0x7fffffff
    isolation_level int8
    session_id int32 v7+
    session_epoch int32 v7+ =-1
    topics []
      topic string
      partitions []
        partition int32
        current_leader_epoch int32 v9+ =-1
        fetch_offset int64
        last_fetched_epoch int32 v12+ =-1
        log_start_offset int64 v5+ =-1
        partition_max_bytes int32
    forgotten_topics_data [] v7+
      topic string
      partitions []int32
    rack_id string v11+
    """,
    response="""
    throttle_time_ms int32
    error_code int16 v7+
    session_id int32 v7+
    responses []
      topic string
      partitions []
        partition_index int32
        error_code int16
        high_watermark int64
        last_stable_offset int64 =-1
        log_start_offset int64 v5+ =-1
        diverging_epoch {} v12+ tag:0
          epoch int32 =-1
          end_offset int64 =-1
        current_leader {} v12+ tag:1
          leader_id int32 =-1
          leader_epoch int32 =-1
        snapshot_id {} v12+ tag:2
          end_offset int64 =-1
          epoch int32 =-1
        aborted_transactions [] null:4+
          producer_id int64
          first_offset int64
        preferred_read_replica int32 v11+ =-1
        records records null:0+
    """,
)  # fmt: skip

LIST_OFFSETS = api(
    2, "ListOffsets", "1-9", 6,  # v7 allows timestamp -3, v8 -4, v9 -5 (no new field)
    request="""
    replica_id int32
    isolation_level int8 v2+
    topics []
      name string
      partitions []
        partition_index int32
        current_leader_epoch int32 v4+ =-1
        timestamp int64
    """,
    response="""
    throttle_time_ms int32 v2+
    topics []
      name string
      partitions []
        partition_index int32
        error_code int16
        timestamp int64 =-1
        offset int64 =-1
        leader_epoch int32 v4+ =-1
    """,
)  # fmt: skip

DATA_APIS = (API_VERSIONS, METADATA, PRODUCE, FETCH, LIST_OFFSETS)
