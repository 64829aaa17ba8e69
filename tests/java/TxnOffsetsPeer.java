// The Java client's consume-transform-produce offsets under transaction version 2 (KIP-890 part 2,
// engine/kafka/txn_v2.py): sendOffsetsToTransaction sends TxnOffsetCommit v5, which adds the
// group to the transaction itself (no AddOffsetsToTxn). One committed transaction carrying
// offset 3 for partition 0, then an aborted one carrying offset 5. Prints "done";
// tests/engine/kafka/test_kafka_java.py checks the group's offsets and the producer's epoch.
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerGroupMetadata;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringSerializer;

public class TxnOffsetsPeer {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = args[1];
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("transactional.id", "java-offsets");
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        TopicPartition input = new TopicPartition(topic, 0);
        ConsumerGroupMetadata group = new ConsumerGroupMetadata("java-offsets-group");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            producer.initTransactions();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, 1, null, "out-committed"));
            producer.sendOffsetsToTransaction(Map.of(input, new OffsetAndMetadata(3)), group);
            producer.commitTransaction();
            producer.beginTransaction();
            producer.send(new ProducerRecord<>(topic, 1, null, "out-aborted"));
            producer.sendOffsetsToTransaction(Map.of(input, new OffsetAndMetadata(5)), group);
            producer.abortTransaction();
        }
        System.out.println("done");
    }
}
