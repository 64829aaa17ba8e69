"""Schemas of the consumer-group APIs (the classic rebalance protocol, not KIP-848):
FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
DescribeGroups, ListGroups, DeleteGroups.

OffsetCommit stops at 8 and OffsetFetch at 7: the next versions exist for the KIP-848
protocol (member epochs, batched groups), which we do not advertise yet.
"""

from __future__ import annotations

from streamhouse.kafka.protocol.schema import api

FIND_COORDINATOR = api(
    10, "FindCoordinator", "0-4", 3,
    request="""
    key string v0-3
    key_type int8 v1+
    coordinator_keys []string v4+
    """,
    response="""
    throttle_time_ms int32 v1+
    error_code int16 v0-3
    error_message string v1-3 null:1-3 =null
    node_id int32 v0-3
    host string v0-3
    port int32 v0-3
    coordinators [] v4+
      key string
      node_id int32
      host string
      port int32
      error_code int16
      error_message string null:4+ =null
    """,
)  # fmt: skip

JOIN_GROUP = api(
    11, "JoinGroup", "0-9", 6,
    request="""
    group_id string
    session_timeout_ms int32
    rebalance_timeout_ms int32 v1+ =-1
    member_id string
    group_instance_id string v5+ null:5+ =null
    protocol_type string
    protocols []
      name string
      metadata bytes
    reason string v8+ null:8+ =null
    """,
    response="""
    throttle_time_ms int32 v2+
    error_code int16
    generation_id int32 =-1
    protocol_type string v7+ null:7+ =null
    protocol_name string null:7+
    leader string
    skip_assignment bool v9+
    member_id string
    members []
      member_id string
      group_instance_id string v5+ null:5+ =null
      metadata bytes
    """,
)  # fmt: skip

SYNC_GROUP = api(
    14, "SyncGroup", "0-5", 4,
    request="""
    group_id string
    generation_id int32
    member_id string
    group_instance_id string v3+ null:3+ =null
    protocol_type string v5+ null:5+ =null
    protocol_name string v5+ null:5+ =null
    assignments []
      member_id string
      assignment bytes
    """,
    response="""
    throttle_time_ms int32 v1+
    error_code int16
    protocol_type string v5+ null:5+ =null
    protocol_name string v5+ null:5+ =null
    assignment bytes
    """,
)  # fmt: skip

HEARTBEAT = api(
    12, "Heartbeat", "0-4", 4,
    request="""
    group_id string
    generation_id int32
    member_id string
    group_instance_id string v3+ null:3+ =null
    """,
    response="""
    throttle_time_ms int32 v1+
    error_code int16
    """,
)  # fmt: skip

LEAVE_GROUP = api(
    13, "LeaveGroup", "0-5", 4,
    request="""
    group_id string
    member_id string v0-2
    members [] v3+
      member_id string
      group_instance_id string null:3+ =null
      reason string v5+ null:5+ =null
    """,
    response="""
    throttle_time_ms int32 v1+
    error_code int16
    members [] v3+
      member_id string
      group_instance_id string null:3+
      error_code int16
    """,
)  # fmt: skip

OFFSET_COMMIT = api(
    8, "OffsetCommit", "2-8", 8,
    request="""
    group_id string
    generation_id int32 =-1
    member_id string
    group_instance_id string v7+ null:7+ =null
    retention_time_ms int64 v2-4 =-1
    topics []
      name string
      partitions []
        partition_index int32
        committed_offset int64
        committed_leader_epoch int32 v6+ =-1
        committed_metadata string null:0+
    """,
    response="""
    throttle_time_ms int32 v3+
    topics []
      name string
      partitions []
        partition_index int32
        error_code int16
    """,
)  # fmt: skip

OFFSET_FETCH = api(
    9, "OffsetFetch", "1-7", 6,
    request="""
    group_id string
    topics [] null:2+
      name string
      partition_indexes []int32
    require_stable bool v7+
    """,
    response="""
    throttle_time_ms int32 v3+
    topics []
      name string
      partitions []
        partition_index int32
        committed_offset int64
        committed_leader_epoch int32 v5+ =-1
        metadata string null:0+
        error_code int16
    error_code int16 v2+
    """,
)  # fmt: skip

DESCRIBE_GROUPS = api(
    15, "DescribeGroups", "0-5", 5,
    request="""
    groups []string
    include_authorized_operations bool v3+
    """,
    response="""
    throttle_time_ms int32 v1+
    groups []
      error_code int16
      group_id string
      group_state string
      protocol_type string
      protocol_data string
      members []
        member_id string
        group_instance_id string v4+ null:4+ =null
        client_id string
        client_host string
        member_metadata bytes
        member_assignment bytes
      authorized_operations int32 v3+ =-2147483648
    """,
)  # fmt: skip

LIST_GROUPS = api(
    16, "ListGroups", "0-4", 3,
    request="""
    states_filter []string v4+
    """,
    response="""
    throttle_time_ms int32 v1+
    error_code int16
    groups []
      group_id string
      protocol_type string
      group_state string v4+
    """,
)  # fmt: skip

DELETE_GROUPS = api(
    42, "DeleteGroups", "0-2", 2,
    request="""
    groups_names []string
    """,
    response="""
    throttle_time_ms int32
    results []
      group_id string
      error_code int16
    """,
)  # fmt: skip

GROUP_APIS = (
    FIND_COORDINATOR, JOIN_GROUP, SYNC_GROUP, HEARTBEAT, LEAVE_GROUP,
    OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE_GROUPS, LIST_GROUPS, DELETE_GROUPS,
)  # fmt: skip
