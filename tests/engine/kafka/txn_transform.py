"""A consume-transform-produce loop with a transactional producer (confluent-kafka), run as a
process that test_kafka_transactions.py kills with SIGKILL: each input record of topic `in`
becomes `out-<value>` in topic `out`, and the input offsets are committed inside the same
transaction (group "transform"). Exits 0 once it has committed everything up to `total`."""

from __future__ import annotations

import sys

from confluent_kafka import Consumer, Producer, TopicPartition


def main(bootstrap: str, source: str, sink: str, total: int) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "transform", "linger.ms": 1})
    producer.init_transactions(30)  # aborts what a killed predecessor left open, and fences it
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "transform", "enable.auto.commit": False,
                         "isolation.level": "read_committed"})  # fmt: skip
    start = consumer.committed([TopicPartition(source, 0)], timeout=30)[0].offset
    position = max(start, 0)
    consumer.assign([TopicPartition(source, 0, position)])
    while position < total:
        messages = [m for m in consumer.consume(7, 0.5) if m.error() is None]
        if not messages:
            continue
        producer.begin_transaction()
        for message in messages:
            producer.produce(sink, b"out-" + message.value(), partition=0)
        position = messages[-1].offset() + 1
        offsets = [TopicPartition(source, 0, position)]
        producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
