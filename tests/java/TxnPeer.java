// The Java Kafka client's transactional producer (kafka-clients 4.x) against the StreamHouse
// Kafka listener (issue 18): a committed transaction, an aborted one, a zombie fenced by a new
// instance of its transactional id, then a read_committed consumer. Prints one line per outcome
// and per consumed record; tests/engine/kafka/test_kafka_java_txn.py checks them.
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnPeer {
    static KafkaProducer<String, String> producer(String bootstrap, String tid) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("transactional.id", tid);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        KafkaProducer<String, String> producer = new KafkaProducer<>(p);
        producer.initTransactions();
        return producer;
    }

    static void send(KafkaProducer<String, String> producer, String topic, String prefix, int n) {
        for (int i = 0; i < n; i++) {
            producer.send(new ProducerRecord<>(topic, i % 2, null, prefix + "-" + i));
        }
        producer.flush();
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        KafkaProducer<String, String> first = producer(bootstrap, "java-app");
        first.beginTransaction();
        send(first, topic, "committed", 4);
        first.commitTransaction();
        first.beginTransaction();
        send(first, topic, "aborted", 4);
        first.abortTransaction();
        first.beginTransaction();
        send(first, topic, "zombie", 2);
        KafkaProducer<String, String> second = producer(bootstrap, "java-app");
        try {
            first.commitTransaction();
            System.out.println("zombie committed");
        } catch (KafkaException e) {
            System.out.println("fenced " + e.getClass().getSimpleName());
        }
        first.close(Duration.ofSeconds(5));
        second.beginTransaction();
        send(second, topic, "second", 2);
        second.commitTransaction();
        second.close();

        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("isolation.level", "read_committed");
        c.put("key.deserializer", StringDeserializer.class.getName());
        c.put("value.deserializer", StringDeserializer.class.getName());
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
            List<TopicPartition> parts = List.of(new TopicPartition(topic, 0), new TopicPartition(topic, 1));
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            int seen = 0;
            long deadline = System.currentTimeMillis() + 15000;
            while (seen < 6 && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
                    System.out.println("consumed " + r.value());
                    seen++;
                }
            }
            // Whatever else arrives within a second would be a record that should not be seen.
            for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofSeconds(1))) {
                System.out.println("consumed " + r.value());
            }
        }
    }
}
