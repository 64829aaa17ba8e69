"""Schemas of the admin APIs: CreateTopics, DeleteTopics, CreatePartitions,
DescribeConfigs, AlterConfigs, IncrementalAlterConfigs (what kafka-configs.sh and the Java
Admin's incrementalAlterConfigs send), and InitProducerId (the idempotent producer's
handshake)."""

from __future__ import annotations

from streamhouse.kafka.protocol.schema import api

CREATE_TOPICS = api(
    19, "CreateTopics", "0-7", 5,
    request="""
    topics []
      name string
      num_partitions int32
      replication_factor int16
      assignments []
        partition_index int32
        broker_ids []int32
      configs []
        name string
        value string null:0+
    timeout_ms int32 =60000
    validate_only bool v1+
    """,
    response="""
    throttle_time_ms int32 v2+
    topics []
      name string
      topic_id uuid v7+
      error_code int16
      error_message string v1+ null:0+ =null
      topic_config_error_code int16 v5+ tag:0
      num_partitions int32 v5+ =-1
      replication_factor int16 v5+ =-1
      configs [] v5+ null:5+
        name string
        value string null:5+
        read_only bool
        config_source int8 =-1
        is_sensitive bool
    """,
)  # fmt: skip

DELETE_TOPICS = api(
    20, "DeleteTopics", "0-6", 4,
    request="""
    topics [] v6+
      name string null:6+ =null
      topic_id uuid
    topic_names []string v0-5
    timeout_ms int32
    """,
    response="""
    throttle_time_ms int32 v1+
    responses []
      name string null:6+
      topic_id uuid v6+
      error_code int16
      error_message string v5+ null:5+ =null
    """,
)  # fmt: skip

CREATE_PARTITIONS = api(
    37, "CreatePartitions", "0-3", 2,
    request="""
    topics []
      name string
      count int32
      assignments [] null:0+
        broker_ids []int32
    timeout_ms int32
    validate_only bool
    """,
    response="""
    throttle_time_ms int32
    results []
      name string
      error_code int16
      error_message string null:0+ =null
    """,
)  # fmt: skip

DESCRIBE_CONFIGS = api(
    32, "DescribeConfigs", "0-4", 4,
    request="""
    resources []
      resource_type int8
      resource_name string
      configuration_keys []string null:0+
    include_synonyms bool v1+
    include_documentation bool v3+
    """,
    response="""
    throttle_time_ms int32
    results []
      error_code int16
      error_message string null:0+
      resource_type int8
      resource_name string
      configs []
        name string
        value string null:0+
        read_only bool
        is_default bool v0
        config_source int8 v1+ =-1
        is_sensitive bool
        synonyms [] v1+
          name string
          value string null:0+
          source int8
        config_type int8 v3+
        documentation string v3+ null:0+
    """,
)  # fmt: skip

ALTER_CONFIGS = api(
    33, "AlterConfigs", "0-2", 2,
    request="""
    resources []
      resource_type int8
      resource_name string
      configs []
        name string
        value string null:0+
    validate_only bool
    """,
    response="""
    throttle_time_ms int32
    responses []
      error_code int16
      error_message string null:0+
      resource_type int8
      resource_name string
    """,
)  # fmt: skip

INCREMENTAL_ALTER_CONFIGS = api(
    44, "IncrementalAlterConfigs", "0-1", 1,
    request="""
    resources []
      resource_type int8
      resource_name string
      configs []
        name string
        config_operation int8
        value string null:0+
    validate_only bool
    """,
    response="""
    throttle_time_ms int32
    responses []
      error_code int16
      error_message string null:0+
      resource_type int8
      resource_name string
    """,
)  # fmt: skip

INIT_PRODUCER_ID = api(
    22, "InitProducerId", "0-4", 2,
    request="""
    transactional_id string null:0+
    transaction_timeout_ms int32
    producer_id int64 v3+ =-1
    producer_epoch int16 v3+ =-1
    """,
    response="""
    throttle_time_ms int32
    error_code int16
    producer_id int64 =-1
    producer_epoch int16
    """,
)  # fmt: skip

ADMIN_APIS = (
    CREATE_TOPICS, DELETE_TOPICS, CREATE_PARTITIONS, DESCRIBE_CONFIGS, ALTER_CONFIGS, INCREMENTAL_ALTER_CONFIGS,
    INIT_PRODUCER_ID,
)  # fmt: skip
