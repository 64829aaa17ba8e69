// The Java Kafka client (kafka-clients 4.x, defaults: idempotent producer, classic group
// protocol) against the StreamHouse Kafka listener. Prints one line per produced and per
// consumed record; tests/engine/kafka/test_kafka_java.py checks them against what our SDK reads.
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class KafkaPeer {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        int perCodec = Integer.parseInt(args[2]);
        String[] codecs = {"none", "gzip", "snappy", "lz4", "zstd"};
        for (String codec : codecs) {
            Properties p = new Properties();
            p.put("bootstrap.servers", bootstrap);
            p.put("compression.type", codec);
            p.put("key.serializer", ByteArraySerializer.class.getName());
            p.put("value.serializer", ByteArraySerializer.class.getName());
            try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
                for (int i = 0; i < perCodec; i++) {
                    byte[] key = i % 3 == 0 ? null : ("k" + i).getBytes();
                    ProducerRecord<byte[], byte[]> record =
                            new ProducerRecord<>(topic, i % 2, 1700000000000L + i, key, (codec + "-" + i).getBytes());
                    record.headers().add("h", ("x" + i).getBytes());
                    RecordMetadata md = producer.send(record).get();
                    System.out.println("produced " + md.partition() + " " + md.offset());
                }
            }
        }
        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("group.id", "java-group");
        c.put("auto.offset.reset", "earliest");
        c.put("enable.auto.commit", "false");
        c.put("key.deserializer", ByteArrayDeserializer.class.getName());
        c.put("value.deserializer", ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(c)) {
            consumer.subscribe(List.of(topic));
            int seen = 0;
            long deadline = System.currentTimeMillis() + 60_000;
            while (seen < codecs.length * perCodec && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    seen++;
                    String key = r.key() == null ? "<null>" : new String(r.key());
                    System.out.println("consumed " + r.partition() + " " + r.offset() + " " + r.timestamp() + " "
                            + key + " " + new String(r.value()) + " " + new String(r.headers().lastHeader("h").value()));
                }
            }
            consumer.commitSync();
        }
        // ListOffsets' tiered-storage specs (KIP-405/KIP-1005: sent at v8 and v9) beside earliest
        // and latest: "listed <spec> <partition> <offset> <timestamp>".
        Properties a = new Properties();
        a.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(a)) {
            Map<String, OffsetSpec> specs = Map.of("earliest", OffsetSpec.earliest(), "latest", OffsetSpec.latest(),
                    "earliest-local", OffsetSpec.earliestLocal(), "latest-tiered", OffsetSpec.latestTiered());
            for (Map.Entry<String, OffsetSpec> spec : specs.entrySet()) {
                for (int p = 0; p < 2; p++) {
                    TopicPartition tp = new TopicPartition(topic, p);
                    ListOffsetsResultInfo info = admin.listOffsets(Map.of(tp, spec.getValue())).partitionResult(tp).get();
                    System.out.println("listed " + spec.getKey() + " " + p + " " + info.offset() + " " + info.timestamp());
                }
            }
        }
    }
}
