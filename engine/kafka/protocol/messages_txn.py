"""Schemas of the transaction APIs (KIP-98, issue 18): AddPartitionsToTxn, AddOffsetsToTxn,
EndTxn, TxnOffsetCommit. InitProducerId is in messages_admin.py, FindCoordinator (key type 1
for a transactional id) in messages_groups.py.

AddPartitionsToTxn stops at 3: version 4 (KIP-890) batches several transactional ids for
brokers verifying on a leader's behalf, which clients never send. EndTxn 4 and TxnOffsetCommit 4
only allow TRANSACTION_ABORTABLE; EndTxn 5 answers the epoch bumped per transaction and
TxnOffsetCommit 5 adds its group implicitly (KIP-890 part 2, transaction version 2: txn_v2.py).
"""

from __future__ import annotations

from streamhouse.kafka.protocol.schema import api

ADD_PARTITIONS_TO_TXN = api(
    24, "AddPartitionsToTxn", "0-3", 3,
    request="""
    transactional_id string
    producer_id int64
    producer_epoch int16
    topics []
      name string
      partitions []int32
    """,
    response="""
    throttle_time_ms int32
    results []
      name string
      results []
        partition_index int32
        error_code int16
    """,
)  # fmt: skip

ADD_OFFSETS_TO_TXN = api(
    25, "AddOffsetsToTxn", "0-3", 3,
    request="""
    transactional_id string
    producer_id int64
    producer_epoch int16
    group_id string
    """,
    response="""
    throttle_time_ms int32
    error_code int16
    """,
)  # fmt: skip

END_TXN = api(
    26, "EndTxn", "0-5", 3,
    request="""
    transactional_id string
    producer_id int64
    producer_epoch int16
    committed bool
    """,
    response="""
    throttle_time_ms int32
    error_code int16
    producer_id int64 v5+ =-1
    producer_epoch int16 v5+ =-1
    """,
)  # fmt: skip

TXN_OFFSET_COMMIT = api(
    28, "TxnOffsetCommit", "0-5", 3,
    request="""
    transactional_id string
    group_id string
    producer_id int64
    producer_epoch int16
    generation_id int32 v3+ =-1
    member_id string v3+
    group_instance_id string v3+ null:3+ =null
    topics []
      name string
      partitions []
        partition_index int32
        committed_offset int64
        committed_leader_epoch int32 v2+ =-1
        committed_metadata string null:0+
    """,
    response="""
    throttle_time_ms int32
    topics []
      name string
      partitions []
        partition_index int32
        error_code int16
    """,
)  # fmt: skip

TXN_APIS = (ADD_PARTITIONS_TO_TXN, ADD_OFFSETS_TO_TXN, END_TXN, TXN_OFFSET_COMMIT)
